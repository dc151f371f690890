import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { AgentClient } from '../../src/agent/index.js';
import { TwoHostLab } from '../../src/lab/index.js';
import { packageRoot } from '../../src/paths.js';
import {
  guestSpec,
  migrationReport,
  waitFor,
  waitForOkHeartbeats,
  waitUntilTransferring,
} from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const OUTPUT_DIR = join(packageRoot(), 'test-output', 'dashboard');
const skip = existsSync(CHROMIUM)
  ? false
  : `Debian's chromium is not installed at ${CHROMIUM} (as root: apt-get install -y chromium; scripts/run-tests.mjs installs it when it runs as root)`;

/** Starts `vmferry dashboard` as the operator would and returns its page address. */
async function startDashboard(
  lab: TwoHostLab,
): Promise<{ url: string; child: ChildProcessWithoutNullStreams; stderr: () => string }> {
  const child = spawn(
    process.execPath,
    [
      join(packageRoot(), 'bin', 'vmferry.js'),
      'dashboard',
      '--listen',
      '127.0.0.1:0',
      '--agents',
      `${lab.agents.a.localAddress},${lab.agents.b.localAddress}`,
      '--interval-ms',
      '500',
      '--json',
    ],
    { env: lab.cliEnv('a') },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      const m = /"url": "([^"]+)"/.exec(stdout);
      if (m?.[1] !== undefined) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`vmferry dashboard exited (${code}): ${stderr}`)));
  });
  return { url, child, stderr: () => stderr };
}

describe('the live dashboard in a real browser (headless Chromium, real agents)', { skip }, () => {
  let lab: TwoHostLab;
  let a: AgentClient;
  let dashboard: Awaited<ReturnType<typeof startDashboard>>;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let migrationId = '';

  before(async () => {
    mkdirSync(OUTPUT_DIR, { recursive: true });
    lab = await TwoHostLab.create({ prefix: 'vmd', subnet: 71 });
    await lab.start();
    a = lab.client('a');
    await a.post('/v1/vms', guestSpec('watched', 128, 4), { timeoutMs: 60_000 });
    await waitForOkHeartbeats(a, 'watched', 2);
    dashboard = await startDashboard(lab);
    profile = mkdtempSync(join(tmpdir(), 'vmf-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 860 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  });
  after(async () => {
    await context?.close();
    dashboard?.child.kill('SIGINT');
    await lab?.close();
    if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
  });

  it('shows both lab hosts, their VMs and the guest health, live', async () => {
    await page.goto(dashboard.url);
    await page.locator('#connection.live').waitFor();
    const guest = page.locator('[data-host="host-a"] [data-vm="watched"] .health');
    await waitFor('the guest health on host-a', async () =>
      (await guest.count()) === 1 && (await guest.textContent()) === 'ok' ? true : undefined,
    );
    assert.equal(await page.locator('[data-host="host-b"] h3').textContent(), 'host-b');
    assert.equal(await page.locator('[data-host="host-b"] .empty').textContent(), 'no VMs');
    assert.match(
      (await page.locator('[data-host="host-a"] .meta').textContent()) ?? '',
      /^unix:.*agent\.sock · tcg · QEMU \d/,
    );
  });

  it("follows a running migration's progress bar and throughput as it advances", async () => {
    // Capped so the migration lasts several seconds: long enough to watch and to act on.
    ({ id: migrationId } = await a.post<{ id: string }>('/v1/migrations', {
      vm: 'watched',
      to: lab.agents.b.address,
      options: { bandwidthMiBps: 12 },
    }));
    await waitUntilTransferring(a, migrationId, 1024 * 1024);
    const card = `[data-migration="${migrationId}"]`;
    const progress = async (): Promise<number | undefined> => {
      const value = Number(
        (await page.locator(`${card} progress`).getAttribute('value', { timeout: 1000 })) ?? 0,
      );
      return value > 0 ? value : undefined;
    };
    const first = await waitFor('a progress bar above 0%', progress);
    const later = await waitFor('the progress bar to advance', async () => {
      const value = await progress();
      return value !== undefined && value > first ? value : undefined;
    });
    assert.ok(later > first, `progress went from ${first}% to ${later}%`);
    const figures = (await page.locator(`${card} .figures`).textContent()) ?? '';
    assert.match(figures, /^\d+\.\d% · \d+\.\d\d Gbit\/s · [\d.]+ [KMG]iB left · pass \d+ · \d+ s$/);
    assert.equal(await page.locator(`${card} .title strong`).textContent(), 'watched');
    await page.screenshot({ path: join(OUTPUT_DIR, 'dashboard.png'), fullPage: true });
  });

  it('asks before acting: a dismissed abort sends nothing, a confirmed force-complete finishes it', async () => {
    const card = `[data-migration="${migrationId}"]`;
    const asked: string[] = [];
    page.once('dialog', (d) => {
      asked.push(d.message());
      void d.dismiss();
    });
    await page.locator(`${card} [data-action="abort"]`).click();
    page.once('dialog', (d) => {
      asked.push(d.message());
      void d.accept();
    });
    await page.locator(`${card} [data-action="force-complete"]`).click();
    assert.deepEqual(asked, [
      `Abort migration ${migrationId} of watched? The VM keeps running on host-a.`,
      `Force migration ${migrationId} of watched to complete? The guest may pause until the rest is sent.`,
    ]);
    const report = await migrationReport(a, migrationId);
    assert.equal(report.status, 'completed', 'the dismissed abort was never sent');
    assert.ok(
      report.events.some((e) => e.startsWith('force-complete requested by the operator')),
      report.events.join('; '),
    );
    assert.ok(report.forcedPauseMs !== undefined, 'force-complete without post-copy pauses the guest');
  });

  it('links each finished migration to its chart, served as SVG by the dashboard', async () => {
    const link = page.locator(`[data-finished="${migrationId}"] a[data-chart="${migrationId}"]`);
    await link.waitFor();
    const href = await link.getAttribute('href');
    assert.equal(href, `/charts/0/${migrationId}.svg`);
    const chart = await page.request.get(new URL(href ?? '', dashboard.url).toString());
    assert.equal(chart.status(), 200);
    assert.equal(chart.headers()['content-type'], 'image/svg+xml; charset=utf-8');
    const svg = await chart.text();
    for (const series of ['throughput', 'remaining-ram', 'dirty-rate', 'downtime-limit'])
      assert.ok(svg.includes(`<path data-series="${series}"`), series);
    assert.match(svg, /<line data-phase="handover"/);
    await waitFor('the VM on host-b in the page', async () =>
      (await page.locator('[data-host="host-b"] [data-vm="watched"]').count()) === 1 ? true : undefined,
    );
    await page.screenshot({ path: join(OUTPUT_DIR, 'dashboard-after.png'), fullPage: true });
  });
});
