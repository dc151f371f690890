import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentClient, MigrationRecord, VmView } from '../../src/agent/index.js';
import { TwoHostLab } from '../../src/lab/index.js';
import { loadTlsIdentity } from '../../src/pki/index.js';
import { EXAMPLE_SETTINGS } from '../../src/policy/settings.fixture.js';
import {
  guestSpec,
  guestVmSpec,
  migrationReport,
  qemuPidsMatching,
  runCli,
  vmNames,
  waitFor,
  waitForOkHeartbeats,
} from './helpers.js';

/**
 * A hand-over whose answer is lost: B's agent is made to take 30 s to start the
 * guest (failpoint incoming.complete), longer than A waits for the answer (20 s),
 * so A cannot know whether the guest already runs on B. A must keep its copy
 * paused until B says, and exactly one copy must run in the end.
 */
describe('hand-over in doubt (real QEMU under TCG, real agents)', () => {
  let lab: TwoHostLab;
  let a: AgentClient;
  let b: AgentClient;

  before(async () => {
    lab = await TwoHostLab.create({
      accel: 'tcg',
      prefix: 'vmh',
      subnet: 60,
      agentEnv: { b: { VMFERRY_FAILPOINTS: 'incoming.complete=30000' } },
      // Incoming copies nobody finishes are checked with their source after 2 s (default 60).
      novaConf: '[vmferry]\norphan_check_seconds = 2\n',
    });
    await lab.start();
    a = lab.client('a');
    b = lab.client('b');
  });
  after(async () => {
    await lab?.close();
  });

  async function record(
    id: string,
  ): Promise<MigrationRecord & { events: { to: string; message: string | null }[] }> {
    return a.get(`/v1/migrations/${id}`);
  }

  /** Starts a migration and waits until A waits for B to start the guest. */
  async function migrateUntilHandOver(name: string): Promise<string> {
    await a.post('/v1/vms', guestSpec(name), { timeoutMs: 60_000 });
    await waitForOkHeartbeats(a, name, 2);
    const { id } = await a.post<{ id: string }>('/v1/migrations', { vm: name, to: lab.agents.b.address });
    await waitFor(
      `${id} to reach the hand-over`,
      async () => ((await record(id)).state === 'completing' ? true : undefined),
      60_000,
    );
    return id;
  }

  /** The source guest is paused: no heartbeat for 3 s (it prints one a second). */
  async function assertSourcePaused(name: string): Promise<void> {
    const first = (await a.get<VmView>(`/v1/vms/${name}`)).guest.lastSeq;
    await sleep(3000);
    const second = (await a.get<VmView>(`/v1/vms/${name}`)).guest.lastSeq;
    assert.equal(
      second,
      first,
      `the source guest of ${name} must stay paused while the hand-over is in doubt`,
    );
  }

  /** The VM runs on B and verifies OK there; A holds nothing of it. */
  async function assertRunsOnlyOnB(name: string): Promise<void> {
    assert.equal((await b.get<VmView>(`/v1/vms/${name}`)).state, 'running');
    await waitForOkHeartbeats(b, name, 3);
    assert.ok(!(await vmNames(a)).includes(name), `A must have forgotten ${name}`);
    await waitFor(`A's QEMU for ${name} to be gone`, async () =>
      (await qemuPidsMatching(join(lab.agents.a.stateDir, 'vms', name))).length === 0 ? true : undefined,
    );
  }

  it('keeps the source paused while the answer is lost, then finishes on B where the guest runs', async () => {
    const id = await migrateUntilHandOver('doubt');
    await assertSourcePaused('doubt');
    const abort = await runCli(['migrate', '--abort', id], lab.cliEnv('a'));
    assert.notEqual(abort.code, 0, 'an abort during the hand-over is refused');
    assert.match(abort.stderr, /cannot be aborted: it is handing over, the guest may already run on/);
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'completed', report.error);
    assert.ok(
      report.events.some((e) => /hand-over answer was lost .*did not answer/.test(e)),
      report.events.join('\n'),
    );
    assert.ok(report.events.some((e) => /runs the guest: the hand-over had succeeded/.test(e)));
    await assertRunsOnlyOnB('doubt');
    await b.post('/v1/vms/doubt/stop');
  });

  it('settles it after the source agent restarts during the hand-over', async () => {
    const id = await migrateUntilHandOver('restart');
    await lab.stopAgent('a', 'SIGKILL');
    await lab.startAgent('a');
    const during = await record(id);
    assert.equal(during.state, 'completing', 'a hand-over in doubt is not marked failed at restart');
    assert.ok(during.events.some((e) => /restarted during the hand-over/.test(e.message ?? '')));
    await assertSourcePaused('restart');
    const settled = await waitFor(
      `${id} to be settled`,
      async () => {
        const r = await record(id);
        return r.state === 'completing' ? undefined : r;
      },
      60_000,
    );
    assert.equal(settled.state, 'completed', settled.error ?? '');
    assert.match(settled.events.at(-1)?.message ?? '', /settled after a restart: the VM runs on/);
    await assertRunsOnlyOnB('restart');
    await b.post('/v1/vms/restart/stop');
  });

  it('drops an incoming copy its source agent does not know (left by a source that could not reach B)', async () => {
    // Host A's own certificate asks B to prepare a migration A has no record of, as a source
    // that gave up and lost track of it would have left it.
    const hostA = lab.clientWith(
      'b',
      await loadTlsIdentity(join(lab.dir, 'ca', 'issued', lab.agents.a.name)),
    );
    const id = randomUUID();
    await hostA.post(
      '/v1/incoming',
      {
        migrationId: id,
        sourceHost: lab.agents.a.name,
        sourceAddress: lab.agents.a.address,
        spec: guestVmSpec('forgotten'),
        settings: { ...EXAMPLE_SETTINGS, channels: 1 },
      },
      { timeoutMs: 60_000 },
    );
    assert.ok((await vmNames(b)).includes('forgotten'), 'B holds the incoming copy');
    const dropped = await waitFor(
      'B to drop the copy A does not know',
      async () => {
        const m = await b.get<MigrationRecord>(`/v1/migrations/${id}`);
        return m.state === 'failed' ? m : undefined;
      },
      30_000,
    );
    assert.match(dropped.error ?? '', new RegExp(`${lab.agents.a.name} does not know this migration`));
    assert.ok(!(await vmNames(b)).includes('forgotten'));
    await waitFor(`B's QEMU for the copy to be gone`, async () =>
      (await qemuPidsMatching(join(lab.agents.b.stateDir, 'vms', 'forgotten'))).length === 0
        ? true
        : undefined,
    );
  });
});
