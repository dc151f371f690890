import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, MigrationRecord } from '../../src/agent/index.js';
import type { CalibrationResult } from '../../src/calibration/index.js';
import { TwoHostLab } from '../../src/lab/index.js';
import type { MigrationPlan, TransportFigures } from '../../src/policy/index.js';
import { runCli, vmNames } from './helpers.js';

/** `vmferry host calibrate` between the two lab agents, then the plan follows what it measured. */
describe('calibration: each secure transport measured to a peer, and the plan follows the figures (TCG)', () => {
  let lab: TwoHostLab;
  let a: AgentClient;
  let b: AgentClient;

  before(async () => {
    lab = await TwoHostLab.create({ prefix: 'vmp', subnet: 31, accel: 'tcg' });
    await lab.start();
    a = lab.client('a');
    b = lab.client('b');
  });
  after(async () => {
    await lab?.close();
  });

  it('journals Gbit/s and CPU per GiB of native TLS and the tunnel; vmferry plan picks the faster and cites them', async () => {
    const to = lab.agents.b.address;
    const before = await runCli(['plan', '--to', to, '--memory-mib', '512', '--json'], lab.cliEnv('a'));
    assert.equal(before.code, 0, before.stderr);
    const unmeasured = JSON.parse(before.stdout) as MigrationPlan & { figures: TransportFigures };
    assert.deepEqual(unmeasured.figures, {});
    assert.match(
      unmeasured.reasons.find((r) => r.decision === 'transport')?.message ?? '',
      /no figures for this pair of hosts .*the default for QEMU 7\.2\.\d+: vmferry's benchmark on QEMU 7\.2/,
    );

    const r = await runCli(
      ['host', 'calibrate', '--peer', to, '--memory-mib', '128', '--json'],
      lab.cliEnv('a'),
      600_000,
    );
    assert.equal(r.code, 0, r.stderr);
    const c = JSON.parse(r.stdout) as CalibrationResult;
    assert.equal(c.peer, to);
    assert.deepEqual(
      c.runs.map((x) => [x.transport, x.status, x.error]),
      [
        ['nativeTls', 'completed', undefined],
        ['tunnelled', 'completed', undefined],
      ],
    );
    for (const run of c.runs) {
      assert.ok(run.gbps > 0 && run.bytes > 100 * 1024 * 1024, JSON.stringify(run));
      assert.ok(run.cpuSecondsPerGiB !== undefined && run.cpuSecondsPerGiB > 0, JSON.stringify(run));
    }
    const [nativeTls, tunnelled] = c.runs;

    // The trials left nothing behind: no guest on either host, B dropped each copy.
    assert.deepEqual(await vmNames(a), []);
    assert.deepEqual(await vmNames(b), []);
    const onB = await b.get<{ migrations: MigrationRecord[] }>('/v1/migrations');
    const trials = onB.migrations.filter((m) => c.runs.some((x) => x.migrationId === m.id));
    assert.equal(trials.length, 2);
    for (const m of trials) assert.notEqual(m.state, 'completed', `B must have dropped ${m.id}`);

    const listed = await runCli(['plan', '--to', to, '--memory-mib', '512', '--json'], lab.cliEnv('a'));
    assert.equal(listed.code, 0, listed.stderr);
    const plan = JSON.parse(listed.stdout) as MigrationPlan & { figures: TransportFigures };
    assert.equal(plan.figures.calibration?.nativeTls?.gbps, Math.round((nativeTls?.gbps ?? 0) * 100) / 100);
    assert.equal(plan.figures.calibration?.tunnelled?.gbps, Math.round((tunnelled?.gbps ?? 0) * 100) / 100);
    const tunnelFaster = (tunnelled?.gbps ?? 0) > (nativeTls?.gbps ?? 0);
    assert.equal(plan.transport, tunnelFaster ? 'tunnelled' : 'native');
    assert.equal(plan.encryption, tunnelFaster ? 'agent-tls' : 'qemu-tls');
    const one = (x: number | undefined): string => (x ?? 0).toFixed(1).replace('.', '\\.');
    // The reason quotes the journaled figures (Gbit/s to 2 places) to one place.
    const journaled = plan.figures.calibration;
    const figures = tunnelFaster
      ? `tunnel ${one(journaled?.tunnelled?.gbps)} Gbit/s vs native TLS ${one(journaled?.nativeTls?.gbps)} Gbit/s`
      : `native TLS ${one(journaled?.nativeTls?.gbps)} Gbit/s vs tunnel ${one(journaled?.tunnelled?.gbps)} Gbit/s`;
    assert.match(
      plan.reasons.find((x) => x.decision === 'transport')?.message ?? '',
      new RegExp(`faster to this host: ${figures}, calibrated ${c.date}$`),
    );

    const text = await runCli(['plan', '--to', to], lab.cliEnv('a'));
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /figures to this peer:\n {2}calibration: native TLS [\d.]+ Gbit\/s \(\d{4}-\d\d-\d\d\), tunnel/,
    );
  });
});
