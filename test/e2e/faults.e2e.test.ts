import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentClient, MigrationRecord, MigrationView, VmView } from '../../src/agent/index.js';
import { ConflictError } from '../../src/errors.js';
import type { Failpoint } from '../../src/failpoints.js';
import { TwoHostLab, killLeftoverQemu, type HostKey } from '../../src/lab/index.js';
import type { MigrationOverrides } from '../../src/policy/index.js';
import {
  guestSpec,
  migrationReport,
  qemuPidsMatching,
  vmNames,
  waitFor,
  waitForOkHeartbeats,
} from './helpers.js';

/** Failpoints an agent holds until the test releases them (VMFERRY_FAILPOINTS=name=hold). */
class HeldPoints {
  readonly dir = mkdtempSync(join(tmpdir(), 'vmf-failpoints-'));

  env(...points: Failpoint[]): NodeJS.ProcessEnv {
    return {
      VMFERRY_FAILPOINTS: points.map((p) => `${p}=hold`).join(','),
      VMFERRY_FAILPOINT_DIR: this.dir,
    };
  }

  async reached(point: Failpoint): Promise<void> {
    await waitFor(
      `failpoint ${point} to be reached`,
      () => (existsSync(join(this.dir, `${point}.reached`)) ? true : undefined),
      120_000,
    );
  }

  release(point: Failpoint): void {
    writeFileSync(join(this.dir, `${point}.release`), '');
  }

  /** After the agent that held it was killed: nobody will remove its files. */
  forget(point: Failpoint): void {
    rmSync(join(this.dir, `${point}.reached`), { force: true });
    rmSync(join(this.dir, `${point}.release`), { force: true });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** What every fault case shares: a lab, held failpoints, and the checks of "exactly one copy". */
class FaultLab {
  readonly held = new HeldPoints();
  readonly lab: TwoHostLab;
  readonly clients: Record<HostKey, AgentClient>;

  constructor(lab: TwoHostLab) {
    this.lab = lab;
    this.clients = { a: lab.client('a'), b: lab.client('b') };
  }

  get a(): AgentClient {
    return this.clients.a;
  }

  /** Restarts an agent gracefully (nothing in flight) with these failpoints held. */
  async restartWith(key: HostKey, ...points: Failpoint[]): Promise<void> {
    await this.lab.stopAgent(key);
    await this.lab.startAgent(key, points.length > 0 ? this.held.env(...points) : {});
  }

  /** kill -9 of an agent stopped at a held failpoint, then a plain restart. */
  async crashAt(key: HostKey, point: Failpoint, beforeRestart?: () => Promise<void>): Promise<void> {
    await this.lab.stopAgent(key, 'SIGKILL');
    this.held.forget(point);
    await beforeRestart?.();
    await this.lab.startAgent(key);
  }

  async startGuest(name: string): Promise<number> {
    await this.a.post('/v1/vms', guestSpec(name), { timeoutMs: 60_000 });
    return waitForOkHeartbeats(this.a, name, 2);
  }

  async migrate(name: string, options: MigrationOverrides = { bandwidthMiBps: 16 }): Promise<string> {
    const { id } = await this.a.post<{ id: string }>('/v1/migrations', {
      vm: name,
      to: this.lab.agents.b.address,
      options,
    });
    return id;
  }

  /** The migration's record on one host; undefined when that host never heard of it. */
  async record(key: HostKey, id: string): Promise<MigrationView | undefined> {
    return this.clients[key].get<MigrationView>(`/v1/migrations/${id}`).catch((err: unknown) => {
      if ((err as { code?: string }).code === 'VMF_ERR_NOT_FOUND') return undefined;
      throw err;
    });
  }

  async settled(key: HostKey, id: string, timeoutMs = 120_000): Promise<MigrationView> {
    return waitFor(
      `migration ${id} to end on ${key}`,
      async () => {
        const r = await this.record(key, id);
        return r !== undefined && ['completed', 'failed', 'cancelled'].includes(r.state) ? r : undefined;
      },
      timeoutMs,
    );
  }

  qemuPids(key: HostKey, name: string): Promise<number[]> {
    return qemuPidsMatching(join(this.lab.agents[key].stateDir, 'vms', name));
  }

  /**
   * Exactly one copy: the VM runs on `host` (one QEMU, guest verifying OK after
   * `afterSeq` when given), the other host has no VM, no QEMU and no run directory
   * of it, and the migration's records on both hosts say where it went.
   */
  async assertOnlyOn(host: HostKey, name: string, afterSeq?: number): Promise<void> {
    const other: HostKey = host === 'a' ? 'b' : 'a';
    const view = await this.clients[host].get<VmView>(`/v1/vms/${name}`);
    assert.equal(view.state, 'running', `${name} runs on ${host}`);
    await waitForOkHeartbeats(this.clients[host], name, 3, afterSeq);
    assert.equal((await this.qemuPids(host, name)).length, 1, `one QEMU of ${name} on ${host}`);
    await waitFor(`${other} to forget ${name}`, async () =>
      (await vmNames(this.clients[other])).includes(name) ? undefined : true,
    );
    await waitFor(`${other}'s QEMU of ${name} to be gone`, async () =>
      (await this.qemuPids(other, name)).length === 0 ? true : undefined,
    );
    await waitFor(`${other}'s run directory of ${name} to be gone`, () =>
      existsSync(join(this.lab.agents[other].stateDir, 'vms', name)) ? undefined : true,
    );
  }

  /** Both journals agree: completed on both (the VM on B) or failed wherever the migration is known (on A). */
  async assertJournals(
    id: string,
    where: HostKey,
  ): Promise<{ a: MigrationView; b: MigrationView | undefined }> {
    const a = await this.settled('a', id);
    const b = (await this.record('b', id)) === undefined ? undefined : await this.settled('b', id);
    const expected = where === 'b' ? 'completed' : 'failed';
    assert.equal(a.state, expected, `A's record: ${a.error ?? ''}`);
    if (where === 'b') assert.equal(b?.state, 'completed', `B's record: ${b?.error ?? ''}`);
    else if (b !== undefined) assert.equal(b.state, 'failed', `B's record: ${b.error ?? ''}`);
    return { a, b };
  }

  async stopVm(key: HostKey, name: string): Promise<void> {
    await this.clients[key].post(`/v1/vms/${name}/stop`);
  }
}

describe('fault matrix: kills at each step, races, a cut link (real QEMU under TCG, real agents)', () => {
  let f: FaultLab;

  before(async () => {
    const lab = await TwoHostLab.create({
      accel: 'tcg',
      prefix: 'vmx',
      subnet: 64,
      // Incoming copies nobody finishes are checked with their source every 2 s (default 60).
      novaConf: '[vmferry]\norphan_check_seconds = 2\n',
    });
    await lab.start();
    f = new FaultLab(lab);
  });
  after(async () => {
    await f?.lab.close();
    f?.held.remove();
  });

  it('two migrations of one VM started at once: exactly one runs, the other is refused naming the VM', async () => {
    await f.startGuest('twice');
    const request = { vm: 'twice', to: f.lab.agents.b.address, options: { bandwidthMiBps: 16 } };
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

  it('the destination refuses the spec (a bridge it lacks): the migration fails at setup naming it, the VM runs on A', async () => {
    const netns = f.lab.agents.a.netns;
    assert.ok(netns !== undefined, 'the fault matrix needs network namespaces (root)');
    execFileSync('ip', ['-n', netns, 'link', 'add', 'brx', 'type', 'bridge']);
    execFileSync('ip', ['-n', netns, 'link', 'set', 'brx', 'up']);
    await f.a.post('/v1/vms', { ...guestSpec('nobridge'), nics: [{ bridge: 'brx' }] }, { timeoutMs: 60_000 });
    const seq = await waitForOkHeartbeats(f.a, 'nobridge', 2);
    const id = await f.migrate('nobridge');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'failed');
    assert.match(report.error ?? '', /VM nobridge: nics\[0\]\.bridge "brx" does not exist on host-b/);
    await f.assertOnlyOn('a', 'nobridge', seq);
    const { a, b } = await f.assertJournals(id, 'a');
    assert.deepEqual(
      a.events.map((e) => e.to).filter((s, i, all) => all.indexOf(s) === i),
      ['preparing', 'failed'],
      'it never got past the setup',
    );
    assert.match(
      b?.error ?? '',
      /^preparing failed: VM nobridge: nics\[0\]\.bridge "brx" does not exist on host-b/,
    );
    await f.stopVm('a', 'nobridge');
  });

  it('16 API clients asking at once all through a migration: every answer comes, the migration completes', async () => {
    await f.startGuest('busy');
    const id = await f.migrate('busy');
    const clients = Array.from({ length: 16 }, () => f.lab.client('a'));
    let answers = 0;
    const ask = async (c: AgentClient): Promise<void> => {
      for (;;) {
        const m = await c.get<MigrationView>(`/v1/migrations/${id}`);
        const { vms } = await c.get<{ vms: VmView[] }>('/v1/vms');
        assert.ok(
          vms.some((v) => v.name === 'busy') || m.state === 'completed',
          'the VM is listed until it left',
        );
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
    await f.held.reached('incoming.started');
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

  const sourceKills: [Failpoint, RegExp][] = [
    ['outgoing.prepare', /^the agent restarted while the migration was in flight$/],
    ['outgoing.precopy-early', /^the agent restarted while the migration was in flight$/],
    ['outgoing.precopy-late', /^the agent restarted while the migration was in flight$/],
    ['outgoing.handover', /^the agent restarted during the hand-over and host-b dropped its copy$/],
  ];
  for (const [point, error] of sourceKills) {
    it(`kill -9 of the source agent at ${point}: the VM runs on A, B drops its copy, both journals say failed`, async () => {
      const name = point.replace(/^outgoing\./, '').replace(/-/g, '');
      await f.restartWith('a', point);
      const seq = await f.startGuest(name);
      const id = await f.migrate(name);
      await f.held.reached(point);
      await f.crashAt('a', point);
      await f.assertOnlyOn('a', name, seq);
      const { a, b } = await f.assertJournals(id, 'a');
      assert.match(a.error ?? '', error);
      if (point === 'outgoing.prepare') assert.equal(b, undefined, 'B was never asked to prepare');
      else assert.match(b?.error ?? '', /source gave up: /);
      await f.stopVm('a', name);
    });
  }

  it('kill -9 of the destination QEMU in pre-copy: the VM runs on A, the error names the failed stream', async () => {
    await f.restartWith('a', 'outgoing.precopy-early');
    const seq = await f.startGuest('qemukill');
    const id = await f.migrate('qemukill');
    await f.held.reached('outgoing.precopy-early');
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
    await f.held.reached('outgoing.precopy-early');
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
    await f.held.reached('incoming.complete');
    await f.crashAt('b', 'incoming.complete');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'failed');
    assert.match(report.error ?? '', /^the hand-over failed \(.*\) and host-b dropped its copy$/);
    await f.assertOnlyOn('a', 'beforecont', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(b?.error ?? '', /^the agent restarted while the migration was in flight$/);
    await f.stopVm('a', 'beforecont');
  });

  it('a link cut for 30 s in pre-copy, then restored: the migration goes on and completes on B', async () => {
    const network = f.lab.network;
    assert.ok(network !== undefined, 'the fault matrix needs network namespaces (root)');
    await f.restartWith('a', 'outgoing.precopy-early');
    await f.startGuest('cut');
    const id = await f.migrate('cut', { bandwidthMiBps: 16, stallSeconds: 0, completionTimeoutSeconds: 0 });
    await f.held.reached('outgoing.precopy-early');
    network.cutLink();
    f.held.release('outgoing.precopy-early');
    try {
      // The length of the cut is the fault being set up, not something measured.
      await sleep(30_000);
    } finally {
      network.restoreLink();
    }
    const report = await migrationReport(f.a, id, 240_000);
    assert.equal(report.status, 'completed', report.error);
    await f.assertOnlyOn('b', 'cut');
    await f.assertJournals(id, 'b');
    await f.stopVm('b', 'cut');
  });

  it('a link cut for good in pre-copy: the stall fails the migration, A resumes, B drops its copy once it can ask A', async () => {
    const network = f.lab.network;
    assert.ok(network !== undefined, 'the fault matrix needs network namespaces (root)');
    await f.restartWith('a', 'outgoing.precopy-early');
    const seq = await f.startGuest('severed');
    const id = await f.migrate('severed', { bandwidthMiBps: 16, stallSeconds: 10, timeoutAction: 'abort' });
    await f.held.reached('outgoing.precopy-early');
    network.cutLink();
    f.held.release('outgoing.precopy-early');
    try {
      const report = await migrationReport(f.a, id, 240_000);
      assert.equal(report.status, 'failed');
      assert.match(report.error ?? '', /^migration aborted: no progress for 10 s$/);
      const view = await f.a.get<VmView>('/v1/vms/severed');
      assert.equal(view.state, 'running');
      await waitForOkHeartbeats(f.a, 'severed', 3, seq);
      // B cannot know yet: its copy stays paused, never started.
      const there = await f.clients.b.get<VmView>('/v1/vms/severed');
      assert.equal(there.state, 'incoming');
    } finally {
      network.restoreLink();
    }
    await f.assertOnlyOn('a', 'severed', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(
      b?.error ?? '',
      /^source gave up: host-a ended this migration \(failed\) without telling this host; nobody will finish this copy$/,
    );
    await f.stopVm('a', 'severed');
  });
});

/**
 * The destination's state directory on a small tmpfs the test fills: the journal
 * (SQLite in WAL mode, appending) then cannot grow, as on a full disk.
 */
class SmallDisk {
  readonly dir: string;
  private readonly filler: string;

  constructor(dir: string) {
    this.dir = dir;
    this.filler = join(dir, 'filler');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'tmpfs', dir]);
  }

  /** Writes until the file system refuses: nothing more fits. */
  fill(): void {
    const chunk = Buffer.alloc(1024 * 1024, 1);
    const fd = openSync(this.filler, 'a');
    try {
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOSPC') throw err;
      // The last, partial chunks: down to the last block.
      for (const size of [65_536, 4096]) {
        try {
          for (;;) writeSync(fd, chunk, 0, size);
        } catch (e) {
          if ((e as { code?: string }).code !== 'ENOSPC') throw e;
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  free(): void {
    rmSync(this.filler, { force: true });
  }

  unmount(): void {
    execFileSync('umount', ['-l', this.dir]);
  }
}

describe("fault matrix: the destination's state disk full (real QEMU under TCG, real agents)", () => {
  let f: FaultLab;
  let disk: SmallDisk;

  before(async () => {
    const lab = await TwoHostLab.create({ accel: 'tcg', prefix: 'vmy', subnet: 65 });
    disk = new SmallDisk(lab.agents.b.stateDir);
    await lab.start();
    f = new FaultLab(lab);
  });
  after(async () => {
    await f?.lab.stopAgent('a');
    await f?.lab.stopAgent('b');
    if (f !== undefined) killLeftoverQemu(f.lab.agents.b.stateDir);
    disk?.unmount();
    await f?.lab.close();
    f?.held.remove();
  });

  it('full before the hand-over: B refuses to start a guest it cannot journal, A resumes, the error names the disk', async () => {
    await f.restartWith('b', 'incoming.complete');
    const seq = await f.startGuest('nospace');
    const id = await f.migrate('nospace');
    await f.held.reached('incoming.complete');
    disk.fill();
    f.held.release('incoming.complete');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'failed');
    assert.match(
      report.error ?? '',
      /^the hand-over failed \(.*cannot be written \(setMigrationState\): database or disk is full \(SQLITE_FULL\).*\) and host-b dropped its copy$/,
    );
    disk.free();
    await f.assertOnlyOn('a', 'nospace', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(b?.error ?? '', /^source gave up: /);
    await f.stopVm('a', 'nospace');
  });

  it('full after cont: the guest runs on B, the migration completes, B journals it once the disk has room', async () => {
    await f.restartWith('b', 'incoming.started');
    await f.startGuest('latejournal');
    const id = await f.migrate('latejournal');
    await f.held.reached('incoming.started');
    disk.fill();
    f.held.release('incoming.started');
    const report = await migrationReport(f.a, id);
    assert.equal(report.status, 'completed', report.error);
    assert.equal((await f.record('b', id))?.state, 'completing', 'B could not journal the end yet');
    disk.free();
    await f.assertOnlyOn('b', 'latejournal');
    await f.assertJournals(id, 'b');
    await f.stopVm('b', 'latejournal');
  });
});
