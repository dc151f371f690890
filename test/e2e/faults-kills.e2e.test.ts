import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, MigrationRecord, MigrationView, VmView } from '../../src/agent/index.js';
import { ConflictError, PlanError } from '../../src/errors.js';
import type { Failpoint } from '../../src/failpoints.js';
import { FaultLab } from './fault-lab.js';
import { guestSpec, migrationReport, processAlive, waitFor, waitForOkHeartbeats } from './helpers.js';

describe('fault matrix: kills at each step, races, a refused spec, busy clients (real QEMU under TCG, real agents)', () => {
  let f: FaultLab;

  before(async () => {
    f = await FaultLab.start('vmx', 64);
  });
  after(async () => {
    await f?.close();
  });

  it('two migrations of one VM started at once: exactly one runs, the other is refused naming the VM', async () => {
    await f.startGuest('twice');
    const request = {
      vm: 'twice',
      to: f.lab.agents.b.address,
      options: { transport: 'native', tls: true, bandwidthMiBps: 16 },
    };
    const results = await Promise.allSettled([
      f.a.post<{ id: string }>('/v1/migrations', request),
      f.a.post<{ id: string }>('/v1/migrations', request),
    ]);
    const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.id] : []));
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    assert.equal(started.length, 1, 'one migration starts');
    assert.equal(refused.length, 1, 'the other is refused');
    const [error] = refused;
    assert.ok(error instanceof ConflictError, String(error));
    assert.equal(error.code, 'VMF_ERR_CONFLICT');
    assert.match(
      error.message,
      /^VM twice is (already being migrated: a migration of it is being planned|migrating \(migration [0-9a-f-]{36}\))$/,
    );
    const id = started[0] as string;
    assert.equal((await migrationReport(f.a, id)).status, 'completed');
    const ofVm = (await f.a.get<{ migrations: MigrationRecord[] }>('/v1/migrations')).migrations.filter(
      (m) => m.vm === 'twice',
    );
    assert.deepEqual(
      ofVm.map((m) => m.id),
      [id],
      'A journaled one migration of the VM',
    );
    await f.assertOnlyOn('b', 'twice', undefined);
    await f.assertJournals(id, 'b');
    await f.stopVm('b', 'twice');
  });

  it("the destination lacks the spec's bridge: the pre-flight check refuses the migration naming it, nothing starts, the VM runs on A", async () => {
    const netns = f.lab.agents.a.netns;
    assert.ok(netns !== undefined, 'the fault matrix needs network namespaces (root)');
    execFileSync('ip', ['-n', netns, 'link', 'add', 'brx', 'type', 'bridge']);
    execFileSync('ip', ['-n', netns, 'link', 'set', 'brx', 'up']);
    await f.a.post('/v1/vms', { ...guestSpec('nobridge'), nics: [{ bridge: 'brx' }] }, { timeoutMs: 60_000 });
    const seq = await waitForOkHeartbeats(f.a, 'nobridge', 2);
    await assert.rejects(
      f.migrate('nobridge'),
      (err: unknown) =>
        err instanceof PlanError &&
        /pre-flight check failed: bridge brx: bridge brx does not exist on host-b/.test(err.message),
    );
    await f.assertOnlyOn('a', 'nobridge', seq);
    for (const key of ['a', 'b'] as const) {
      const { migrations } = await f.lab.client(key).get<{ migrations: MigrationRecord[] }>('/v1/migrations');
      assert.deepEqual(
        migrations.filter((m) => m.vm === 'nobridge'),
        [],
        `${key} journaled no migration of it: it was refused before anything started`,
      );
    }
    await f.stopVm('a', 'nobridge');
  });

  it('16 API clients asking at once all through a migration: every answer comes, the migration completes', async () => {
    await f.startGuest('busy');
    const id = await f.migrate('busy');
    const clients = Array.from({ length: 16 }, () => f.lab.client('a'));
    let answers = 0;
    const ask = async (c: AgentClient): Promise<void> => {
      for (;;) {
        const { vms } = await c.get<{ vms: VmView[] }>('/v1/vms');
        const m = await c.get<MigrationView>(`/v1/migrations/${id}`);
        assert.ok(Array.isArray(vms));
        assert.equal(m.id, id);
        answers += 2;
        if (['completed', 'failed', 'cancelled'].includes(m.state)) return;
      }
    };
    await Promise.all(clients.map(ask));
    for (const c of clients) c.close();
    assert.ok(answers >= 64, `${answers} answers`);
    assert.equal((await migrationReport(f.a, id)).status, 'completed');
    await f.assertOnlyOn('b', 'busy');
    await f.stopVm('b', 'busy');
  });

  it('kill -9 of the destination agent between cont and its journal write: the guest stays on B, A lets go', async () => {
    await f.restartWith('b', 'incoming.started');
    await f.startGuest('started');
    const id = await f.migrate('started');
    await f.reached('incoming.started', id);
    await f.crashAt('b', 'incoming.started');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'completed', report.error);
    assert.ok(
      report.events.some((e) => /runs the guest: the hand-over had succeeded/.test(e)),
      report.events.join('\n'),
    );
    await f.assertOnlyOn('b', 'started');
    const { b } = await f.assertJournals(id, 'b');
    assert.match(b?.events.at(-1)?.message ?? '', /the guest had started here: it runs here/);
    await f.stopVm('b', 'started');
  });

  const inFlight = 'the agent restarted while the migration was in flight';
  const sourceKills: [Failpoint, (b: string) => string][] = [
    ['outgoing.prepare', () => inFlight],
    ['outgoing.precopy-early', () => inFlight],
    ['outgoing.precopy-late', () => inFlight],
    ['outgoing.handover', (b) => `the agent restarted during the hand-over and ${b} dropped its copy`],
  ];
  for (const [point, error] of sourceKills) {
    it(`kill -9 of the source agent at ${point}: the VM runs on A, B drops its copy, both journals say failed`, async () => {
      const name = point.replace(/^outgoing\./, '').replace(/-/g, '');
      await f.restartWith('a', point);
      const seq = await f.startGuest(name);
      const id = await f.migrate(name);
      await f.reached(point, id);
      await f.crashAt('a', point);
      await f.assertOnlyOn('a', name, seq);
      const { a, b } = await f.assertJournals(id, 'a');
      assert.equal(a.error, error(f.lab.agents.b.address));
      if (point === 'outgoing.prepare') assert.equal(b, undefined, 'B was never asked to prepare');
      else assert.match(b?.error ?? '', /source gave up: /);
      await f.stopVm('a', name);
    });
  }

  it('through the tunnel, kill -9 of the source agent in pre-copy: its relays die with it, the VM runs on A, B drops its copy', async () => {
    await f.restartWith('a', 'outgoing.precopy-early');
    const seq = await f.startGuest('tunsrc');
    const id = await f.migrate('tunsrc', { transport: 'tunnelled' });
    await f.reached('outgoing.precopy-early', id);
    const relays = f.helperProcesses('a');
    assert.ok(relays.length > 0, 'A relays the tunnel in processes of its own');
    await f.crashAt('a', 'outgoing.precopy-early');
    await waitFor("the killed agent's relay processes to exit", () =>
      relays.some((p) => processAlive(p.pid)) ? undefined : true,
    );
    await f.assertOnlyOn('a', 'tunsrc', seq);
    const { a, b } = await f.assertJournals(id, 'a');
    assert.equal(a.plan.transport, 'tunnelled');
    assert.equal(a.error, inFlight);
    // The stream died with A's relays, so B's QEMU fails it at once (before A's restart can give up).
    assert.equal(b?.error, 'the incoming QEMU exited before the migration completed');
    await f.stopVm('a', 'tunsrc');
  });

  it('through the tunnel, kill -9 of the destination agent in pre-copy: its relays die with it, the stream fails, the VM runs on A', async () => {
    await f.restartWith('a', 'outgoing.precopy-early');
    const seq = await f.startGuest('tundst');
    const id = await f.migrate('tundst', { transport: 'tunnelled' });
    await f.reached('outgoing.precopy-early', id);
    const relays = f.helperProcesses('b');
    assert.ok(relays.length > 0, 'B relays the tunnel in processes of its own');
    await f.lab.stopAgent('b', 'SIGKILL');
    await waitFor("the killed agent's relay processes to exit", () =>
      relays.some((p) => processAlive(p.pid)) ? undefined : true,
    );
    f.held.release('outgoing.precopy-early');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'failed');
    assert.match(report.error ?? '', /^QEMU reports the migration failed: /);
    await f.lab.startAgent('b');
    await f.assertOnlyOn('a', 'tundst', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(b?.error ?? '', /the agent restarted while the migration was in flight|source gave up/);
    await f.stopVm('a', 'tundst');
  });

  it('kill -9 of the destination QEMU in pre-copy: the VM runs on A, the error names the failed stream', async () => {
    await f.restartWith('a', 'outgoing.precopy-early');
    const seq = await f.startGuest('qemukill');
    const id = await f.migrate('qemukill');
    await f.reached('outgoing.precopy-early', id);
    const [pid] = await f.qemuPids('b', 'qemukill');
    assert.ok(pid !== undefined, 'B runs the incoming QEMU');
    process.kill(pid, 'SIGKILL');
    f.held.release('outgoing.precopy-early');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'failed');
    assert.match(report.error ?? '', /^QEMU reports the migration failed: /);
    await f.assertOnlyOn('a', 'qemukill', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(b?.error ?? '', /the incoming QEMU exited before the migration completed/);
    await f.stopVm('a', 'qemukill');
  });

  it('kill -9 of the destination agent in pre-copy: the VM runs on A, B drops its copy on restart', async () => {
    await f.restartWith('a', 'outgoing.precopy-early');
    const seq = await f.startGuest('agentkill');
    const id = await f.migrate('agentkill');
    await f.reached('outgoing.precopy-early', id);
    await f.lab.stopAgent('b', 'SIGKILL');
    f.held.release('outgoing.precopy-early');
    // A finds B gone at the hand-over at the latest; B restarts only then.
    await waitFor(`${id} to give up on B or wait for it`, async () => {
      const r = await f.record('a', id);
      return r?.state === 'failed' || r?.state === 'completing' ? true : undefined;
    });
    await f.lab.startAgent('b');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'failed');
    await f.assertOnlyOn('a', 'agentkill', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(b?.error ?? '', /the agent restarted while the migration was in flight|source gave up/);
    await f.stopVm('a', 'agentkill');
  });

  it('kill -9 of the destination agent after the hand-over request, before cont: the VM runs on A', async () => {
    await f.restartWith('b', 'incoming.complete');
    const seq = await f.startGuest('beforecont');
    const id = await f.migrate('beforecont');
    await f.reached('incoming.complete', id);
    await f.crashAt('b', 'incoming.complete');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'failed');
    assert.match(report.error ?? '', /^the hand-over failed \(.*\) and \S+ dropped its copy$/);
    assert.ok(report.error?.endsWith(`and ${f.lab.agents.b.address} dropped its copy`), report.error);
    await f.assertOnlyOn('a', 'beforecont', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(b?.error ?? '', /^the agent restarted while the migration was in flight$/);
    await f.stopVm('a', 'beforecont');
  });
});
