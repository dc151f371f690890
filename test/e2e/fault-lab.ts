import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentClient, MigrationView, VmView } from '../../src/agent/index.js';
import type { Failpoint } from '../../src/failpoints.js';
import { TwoHostLab, type HostKey } from '../../src/lab/index.js';
import type { MigrationOverrides } from '../../src/policy/index.js';
import {
  descendantsOf,
  guestSpec,
  qemuPidsMatching,
  vmNames,
  waitFor,
  waitForOkHeartbeats,
} from './helpers.js';

// The fault matrix's shared set-up: held failpoints, the lab around them, a disk that fills up.

/** Failpoints an agent holds until the test releases them (VMFERRY_FAILPOINTS=name=hold). */
export class HeldPoints {
  readonly dir = mkdtempSync(join(tmpdir(), 'vmf-failpoints-'));

  env(...points: Failpoint[]): NodeJS.ProcessEnv {
    return {
      VMFERRY_FAILPOINTS: points.map((p) => `${p}=hold`).join(','),
      VMFERRY_FAILPOINT_DIR: this.dir,
    };
  }

  isReached(point: Failpoint): boolean {
    return existsSync(join(this.dir, `${point}.reached`));
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
export class FaultLab {
  readonly held = new HeldPoints();
  readonly lab: TwoHostLab;
  readonly clients: Record<HostKey, AgentClient>;

  constructor(lab: TwoHostLab) {
    this.lab = lab;
    this.clients = { a: lab.client('a'), b: lab.client('b') };
  }

  /** A started lab of two agents that check incoming copies nobody finishes every 2 s (default 60). */
  static async start(prefix: string, subnet: number): Promise<FaultLab> {
    const lab = await TwoHostLab.create({
      accel: 'tcg',
      prefix,
      subnet,
      novaConf: '[vmferry]\norphan_check_seconds = 2\n',
    });
    await lab.start();
    return new FaultLab(lab);
  }

  async close(): Promise<void> {
    await this.lab.close();
    this.held.remove();
  }

  get a(): AgentClient {
    return this.clients.a;
  }

  /** The failpoints each agent holds now. */
  private readonly holding: Record<HostKey, Failpoint[]> = { a: [], b: [] };

  /**
   * Restarts an agent gracefully (nothing in flight) with these failpoints held,
   * and the other agent without any if it held some.
   */
  async restartWith(key: HostKey, ...points: Failpoint[]): Promise<void> {
    const other: HostKey = key === 'a' ? 'b' : 'a';
    if (this.holding[other].length > 0) {
      await this.lab.stopAgent(other);
      await this.lab.startAgent(other);
      this.holding[other] = [];
    }
    await this.lab.stopAgent(key);
    await this.lab.startAgent(key, points.length > 0 ? this.held.env(...points) : {});
    this.holding[key] = points;
  }

  /**
   * The processes an agent started that are not QEMU (its relay workers, per-migration
   * relays): none may outlive it, or a stream could go on with no agent to account for it.
   */
  helperProcesses(key: HostKey): { pid: number; comm: string }[] {
    const pid = this.lab.agents[key].process?.pid;
    assert.ok(pid !== undefined, `agent ${key} runs`);
    return descendantsOf(pid).filter((p) => !p.comm.startsWith('qemu-system') && p.comm !== 'setpriv');
  }

  /** kill -9 of an agent stopped at a held failpoint, then a plain restart. */
  async crashAt(key: HostKey, point: Failpoint): Promise<void> {
    await this.lab.stopAgent(key, 'SIGKILL');
    this.held.forget(point);
    await this.lab.startAgent(key);
    this.holding[key] = [];
  }

  /**
   * Waits until an agent holds `point` in migration `id`; fails at once, saying
   * how, if the migration ends first, and with the agents' last log lines if it
   * never gets there.
   */
  async reached(point: Failpoint, id: string): Promise<void> {
    const deadline = Date.now() + 120_000;
    while (!this.held.isReached(point)) {
      const r = await this.record('a', id);
      if (r !== undefined && ['completed', 'failed', 'cancelled'].includes(r.state))
        throw new Error(`migration ${id} ended (${r.state}: ${r.error ?? ''}) before failpoint ${point}`);
      if (Date.now() > deadline)
        throw new Error(
          `failpoint ${point} not reached in 120 s (migration ${r?.state ?? 'unknown'}); agent logs:\n${this.logTails()}`,
        );
      await sleep(200);
    }
  }

  private logTails(): string {
    return (['a', 'b'] as const)
      .map((k) => {
        const file = this.lab.agents[k].logFile;
        const lines = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').slice(-12) : [];
        return `--- ${k}\n${lines.join('\n')}`;
      })
      .join('\n');
  }

  async startGuest(name: string): Promise<number> {
    await this.a.post('/v1/vms', guestSpec(name), { timeoutMs: 60_000 });
    return waitForOkHeartbeats(this.a, name, 2);
  }

  /**
   * Starts a migration to B over QEMU's own TLS, capped at 16 MiB/s so each phase
   * lasts. Pinned: through the tunnel the stream dies with the source agent, so
   * what B records after a kill would depend on the transport the plan picked.
   */
  async migrate(name: string, options: MigrationOverrides = {}): Promise<string> {
    const { id } = await this.a.post<{ id: string }>('/v1/migrations', {
      vm: name,
      to: this.lab.agents.b.address,
      options: { transport: 'native', tls: true, bandwidthMiBps: 16, ...options },
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

/**
 * The destination's state directory on a small tmpfs the test fills: the journal
 * (SQLite in WAL mode, appending) then cannot grow, as on a full disk.
 */
export class SmallDisk {
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
