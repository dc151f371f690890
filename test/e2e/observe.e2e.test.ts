import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, MigrationRecord } from '../../src/agent/index.js';
import type { MigrationSample } from '../../src/migration/index.js';
import { TwoHostLab, type HostKey } from '../../src/lab/index.js';
import { parsePrometheusText, sampleValue, type PromFamily } from '../../src/metrics/index.js';
import { mtlsClientOptions } from '../../src/pki/index.js';
import { packageRoot } from '../../src/paths.js';
import {
  guestSpec,
  migrationReport,
  runCli,
  waitFor,
  waitForOkHeartbeats,
  waitUntilTransferring,
} from './helpers.js';

/** Where this file's tests leave what a person may want to look at (charts, screenshots). */
const OUTPUT_DIR = join(packageRoot(), 'test-output', 'observe');

describe('seeing what migrations do: charts (real QEMU, real agents)', () => {
  let lab: TwoHostLab;
  let a: AgentClient;

  before(async () => {
    mkdirSync(OUTPUT_DIR, { recursive: true });
    lab = await TwoHostLab.create({ prefix: 'vmo', subnet: 70 });
    await lab.start();
    a = lab.client('a');
  });
  after(async () => {
    await lab?.close();
  });

  it('draws the SVG chart of a real migration: every series and its phase marks, the report in the title', async () => {
    await a.post('/v1/vms', guestSpec('charted', 128, 4), { timeoutMs: 60_000 });
    await waitForOkHeartbeats(a, 'charted', 2);
    // Capped so that it lasts a few seconds and several samples are journaled.
    const { id } = await a.post<{ id: string }>('/v1/migrations', {
      vm: 'charted',
      to: lab.agents.b.address,
      options: { transport: 'native', tls: true, bandwidthMiBps: 48 },
    });
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'completed', report.error);
    const { samples } = await a.get<{ samples: MigrationSample[] }>(`/v1/migrations/${id}/samples`);
    assert.ok(samples.length >= 3, `only ${samples.length} samples journaled`);

    const svgFile = join(OUTPUT_DIR, 'migration-chart.svg');
    const htmlFile = join(OUTPUT_DIR, 'migration-chart.html');
    const r = await runCli(['migration', 'show', id, '--svg', svgFile, '--html', htmlFile], lab.cliEnv('a'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      `chart of migration ${id} written to ${svgFile}\nchart of migration ${id} written to ${htmlFile}\n`,
    );
    const svg = readFileSync(svgFile, 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);

    // One point per journaled sample in each sampled series.
    for (const series of ['throughput', 'remaining-ram']) {
      const d = new RegExp(`<path data-series="${series}" d="([^"]*)"`).exec(svg)?.[1];
      assert.ok(d !== undefined, `no ${series} series`);
      assert.equal(d.split(' ').filter((c) => /^[ML]/.test(c)).length, samples.length, series);
    }
    assert.match(svg, /<path data-series="dirty-rate" d="M/);
    assert.match(svg, /<path data-series="cpu-throttle" d="M/);
    assert.match(svg, /<path data-series="downtime-limit" d="M[^"]*H/, 'the downtime limit is a step line');
    assert.ok(!svg.includes('data-series="remaining-disk"'), 'no disk is copied');

    // Phase marks in the order the migration went through them, the end at the right edge.
    const marks = [...svg.matchAll(/<line data-phase="([a-z]+)" data-t="([^"]+)" x1="([^"]+)"/g)].map(
      (m) => ({
        kind: m[1] ?? '',
        t: Number(m[2]),
        x: Number(m[3]),
      }),
    );
    const main = marks.filter((m) => m.kind !== 'pass');
    assert.deepEqual(
      main.map((m) => m.kind),
      ['setup', 'precopy', 'handover', 'end'],
    );
    for (let i = 1; i < marks.length; i++)
      assert.ok((marks[i]?.x ?? 0) >= (marks[i - 1]?.x ?? 0), 'marks left to right in time');
    const view = await a.get<MigrationRecord & { events: { time: number; to: string }[] }>(
      `/v1/migrations/${id}`,
    );
    const handoverAt = view.events.find((e) => e.to === 'completing')?.time ?? 0;
    assert.equal(main[2]?.t, (handoverAt - view.startedAt) / 1000, 'hand-over placed at its journaled time');
    // A pass mark wherever a sample shows the pass counter risen (samples may skip a short pass).
    let seen = 1;
    const passStarts = samples.filter((s) => s.pass > seen && (seen = s.pass) > 0);
    assert.deepEqual(
      marks.filter((m) => m.kind === 'pass').map((m) => m.t),
      passStarts.map((s) => (s.time - view.startedAt) / 1000),
    );

    const headline = /data-role="headline">([^<]*)</.exec(svg)?.[1] ?? '';
    assert.ok(headline.startsWith('completed · native + TLS · '), headline);
    assert.ok(headline.includes(`= ${report.gbps.toFixed(2)} Gbit/s`), headline);
    assert.ok(headline.includes(`downtime ${report.downtimeMs} ms`), headline);
    assert.match(svg, new RegExp(`data-role="title">migration ${id} · charted · host-a → host-b<`));

    const html = readFileSync(htmlFile, 'utf8');
    assert.ok(html.includes('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.match(html, /preparing → migrating/);
  });

  /** GET /metrics through the agent's mutual-TLS front door, as Prometheus would with a deployment certificate. */
  function scrape(key: HostKey): Promise<{ contentType: string; families: Map<string, PromFamily> }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          ...mtlsClientOptions(lab.operator),
          socketPath: lab.agents[key].localAddress.slice('unix:'.length),
          path: '/metrics',
          checkServerIdentity: () => undefined,
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => {
            try {
              assert.equal(res.statusCode, 200, text);
              resolve({
                contentType: String(res.headers['content-type']),
                families: parsePrometheusText(text),
              });
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('counts a migration in /metrics: live gauges while it runs, counters and histograms after', async () => {
    const b = lab.client('b');
    const tls = { transport: 'native-tls' };
    const value = (f: Map<string, PromFamily>, name: string, labels: Record<string, string> = tls): number =>
      sampleValue(f, name, labels) ?? 0;
    const before = (await scrape('b')).families;
    const { id } = await b.post<{ id: string }>('/v1/migrations', {
      vm: 'charted',
      to: lab.agents.a.address,
      options: { transport: 'native', tls: true, bandwidthMiBps: 24 },
    });
    await waitUntilTransferring(b, id);
    const during = await waitFor('the running migration in /metrics', async () => {
      const f = (await scrape('b')).families;
      return sampleValue(f, 'vmferry_migration_remaining_bytes', { migration: id }) !== undefined
        ? f
        : undefined;
    });
    assert.equal(sampleValue(during, 'vmferry_migrations_running'), 1);
    assert.ok(
      (sampleValue(during, 'vmferry_migration_remaining_bytes', { migration: id, vm: 'charted' }) ?? 0) > 0,
    );
    assert.ok(
      (sampleValue(during, 'vmferry_migration_throughput_bytes_per_second', { migration: id }) ?? 0) > 0,
    );
    assert.notEqual(
      sampleValue(during, 'vmferry_migration_dirty_rate_bytes_per_second', { migration: id }),
      undefined,
    );
    assert.equal(
      value(during, 'vmferry_migrations_started_total'),
      value(before, 'vmferry_migrations_started_total') + 1,
    );

    const report = await migrationReport(b, id);
    assert.equal(report.status, 'completed', report.error);
    const { contentType, families: after } = await scrape('b');
    assert.equal(contentType, 'text/plain; version=0.0.4; charset=utf-8');
    const moved = (name: string, labels?: Record<string, string>): number =>
      value(after, name, labels) - value(before, name, labels);
    assert.equal(moved('vmferry_migrations_started_total'), 1);
    assert.equal(moved('vmferry_migrations_completed_total'), 1);
    assert.equal(moved('vmferry_migration_sent_bytes_total'), report.bytes);
    assert.equal(moved('vmferry_migration_downtime_seconds_count'), 1);
    assert.ok(
      Math.abs(moved('vmferry_migration_downtime_seconds_sum') - (report.downtimeMs ?? NaN) / 1000) < 1e-9,
      "the downtime histogram got this migration's downtime",
    );
    assert.equal(moved('vmferry_migration_duration_seconds_count', { ...tls, outcome: 'completed' }), 1);
    assert.equal(moved('vmferry_guest_verdicts_total', { verdict: report.guest }), 1);
    assert.equal(sampleValue(after, 'vmferry_migrations_running'), 0);
    assert.equal(sampleValue(after, 'vmferry_migration_remaining_bytes', { migration: id }), undefined);
    assert.equal(
      sampleValue(after, 'vmferry_guest_health', { vm: 'charted', health: 'ok' }),
      undefined,
      'gone from B',
    );
    assert.ok(
      (sampleValue(after, 'vmferry_process_resident_memory_bytes') ?? 0) > 0,
      'default process metrics',
    );
    const onA = (await scrape('a')).families;
    await waitFor("the guest's health on A", async () =>
      sampleValue((await scrape('a')).families, 'vmferry_guest_health', { vm: 'charted', health: 'ok' }) === 1
        ? true
        : undefined,
    );
    assert.equal(value(onA, 'vmferry_migrations_completed_total'), 1, 'A sent one migration: the chart test');
  });

  it('logs JSON lines with the host on each, and the VM and migration on those that concern one', async () => {
    const { migrations } = await lab.client('b').get<{ migrations: MigrationRecord[] }>('/v1/migrations');
    const sent = migrations.find((m) => m.role === 'source' && m.state === 'completed');
    assert.ok(sent !== undefined, 'B sent a migration in the test before');
    const lines = readFileSync(lab.agents.b.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map(
        (l) =>
          JSON.parse(l) as { host?: string; vm?: string; migration?: string; msg: string; level: number },
      );
    assert.ok(lines.length > 0, 'the agent logs JSON lines when no terminal watches');
    assert.ok(
      lines.every((l) => l.host === 'host-b'),
      'every line names its host',
    );
    const about = lines.filter((l) => l.migration === sent.id);
    assert.ok(about.length >= 2, `lines about ${sent.id}: ${JSON.stringify(about)}`);
    assert.ok(about.every((l) => l.vm === undefined || l.vm === 'charted'));
    assert.ok(
      about.some((l) => l.vm === 'charted' && l.msg.startsWith(`migration ${sent.id} completed: `)),
      JSON.stringify(about),
    );
  });

  it('says which migration it does not know instead of writing an empty chart', async () => {
    const r = await runCli(
      ['migration', 'show', 'no-such-id', '--svg', join(OUTPUT_DIR, 'none.svg')],
      lab.cliEnv('a'),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no migration no-such-id on this host/);
  });
});
