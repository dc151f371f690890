import { MigrationError, QmpCommandError, describeError } from '../errors.js';
import type { QmpClient, QmpEvent } from '../qemu/index.js';
import {
  blockJobCancel,
  blockdevMirror,
  dirtyBytesByNode,
  nbdTargetNode,
  parseBlockJobs,
  type DiskSample,
  type NbdAddress,
  type QmpCall,
  yankTargets,
} from './block-qmp.js';

/** One disk of the source VM to copy: its node, how much of it, and the destination's export. */
export interface MirroredDisk {
  /** The disk's index in the VM spec. */
  disk: number;
  /** The source QEMU's node of the disk (the format node the device uses). */
  nodeName: string;
  exportName: string;
  /** `top`: only the top image; the destination's copy has the same backing image. */
  sync: 'full' | 'top';
}

/** QEMU's own TLS to the destination's NBD server: the source's tls-creds-x509 object, and the destination's certificate name. */
export interface NbdClientTls {
  credsId: string;
  hostname: string;
}

/** How a mirror job ended, from QEMU's events. */
interface JobEnd {
  event: 'BLOCK_JOB_COMPLETED' | 'BLOCK_JOB_CANCELLED';
  error: string | undefined;
}

interface Job {
  disk: MirroredDisk;
  id: string;
  target: string;
  /** blockdev-mirror was accepted (the job exists until it ends). */
  started: boolean;
}

const END_EVENTS = ['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'] as const;

/** What a migration's mirror jobs and NBD nodes are named after in the source QEMU. */
export function mirrorPrefix(migrationId: string): string {
  return `vmf-${migrationId.slice(0, 8)}`;
}

/**
 * The disks whose mirror job or NBD node of the migration named by `prefix`
 * QEMU still lists (query-block-jobs, query-named-block-nodes), by disk index:
 * what an agent that restarted mid-copy finds. Pure.
 */
export function leftoverMirrors(prefix: string, blockJobs: unknown, nodes: unknown): number[] {
  const found = new Set<number>();
  const look = (name: unknown, kind: 'mirror' | 'nbd'): void => {
    if (typeof name !== 'string' || !name.startsWith(`${prefix}-${kind}`)) return;
    const rest = name.slice(prefix.length + kind.length + 1);
    if (/^\d{1,3}$/.test(rest)) found.add(Number(rest));
  };
  for (const j of parseBlockJobs(blockJobs)) look(j.id, 'mirror');
  for (const n of Array.isArray(nodes) ? (nodes as Record<string, unknown>[]) : [])
    look(n['node-name'], 'nbd');
  return [...found].sort((x, y) => x - y);
}

/**
 * The source half of a block migration: one write-blocking mirror per disk into
 * an NBD node of the destination's export. The source never pivots onto the
 * target (nothing here calls block-job-complete): whether the migration
 * completes or fails, the source QEMU keeps running on its own images.
 */
export class DiskMirrors {
  private readonly jobs: Job[] = [];
  private readonly ended = new Map<string, JobEnd>();
  private readonly offEvents: (() => void)[];
  private stopped = false;

  private constructor(private readonly qmp: QmpClient) {
    this.offEvents = END_EVENTS.map((name) =>
      qmp.on(name, (e: QmpEvent) => {
        const id = e.data.device;
        if (typeof id !== 'string') return;
        const error = typeof e.data.error === 'string' ? e.data.error : undefined;
        this.ended.set(id, { event: name, error });
      }),
    );
  }

  /**
   * Attaches the destination's exports and starts one mirror per disk; on a
   * failed step cancels what it started. `prefix` keeps node and job names
   * apart from any other migration's.
   */
  static async start(
    qmp: QmpClient,
    o: {
      prefix: string;
      target: NbdAddress;
      disks: readonly MirroredDisk[];
      tls?: NbdClientTls | undefined;
      /** Bytes/s per disk, 0 unlimited. */
      speed: number;
    },
  ): Promise<DiskMirrors> {
    const mirrors = new DiskMirrors(qmp);
    try {
      for (const disk of o.disks) {
        const job: Job = {
          disk,
          id: `${o.prefix}-mirror${disk.disk}`,
          target: `${o.prefix}-nbd${disk.disk}`,
          started: false,
        };
        await mirrors.call(
          nbdTargetNode({
            nodeName: job.target,
            server: o.target,
            exportName: disk.exportName,
            tlsCreds: o.tls?.credsId,
            tlsHostname: o.tls?.hostname,
          }),
        );
        mirrors.jobs.push(job);
        await mirrors.call(
          blockdevMirror({
            jobId: job.id,
            device: disk.nodeName,
            target: job.target,
            sync: disk.sync,
            speed: o.speed,
          }),
        );
        job.started = true;
      }
    } catch (err) {
      await mirrors.cancel();
      throw err;
    }
    return mirrors;
  }

  /**
   * After a restart: gives up what a migration (`prefix`) left in the source
   * QEMU, as cancel() does: its mirrors force-cancelled, their connections cut,
   * their NBD nodes removed. Over a cut link a mirror left running would keep
   * the guest's writes waiting. Never throws; returns what it did not manage,
   * and which disks it found.
   */
  static async giveUpLeftovers(
    qmp: QmpClient,
    prefix: string,
  ): Promise<{ disks: number[]; problems: string[] }> {
    try {
      const [jobs, nodes] = await Promise.all([
        qmp.execute('query-block-jobs'),
        qmp.execute('query-named-block-nodes', { flat: true }),
      ]);
      const running = new Set(parseBlockJobs(jobs).map((j) => j.id));
      const mirrors = new DiskMirrors(qmp);
      const disks = leftoverMirrors(prefix, jobs, nodes);
      for (const disk of disks) {
        const id = `${prefix}-mirror${disk}`;
        mirrors.jobs.push({
          disk: { disk, nodeName: '', exportName: '', sync: 'full' },
          id,
          target: `${prefix}-nbd${disk}`,
          started: running.has(id),
        });
      }
      if (disks.length === 0) {
        mirrors.stop();
        return { disks, problems: [] };
      }
      return { disks, problems: await mirrors.cancel() };
    } catch (err) {
      return { disks: [], problems: [describeError(err)] };
    }
  }

  /** The job ids, for logs. */
  get jobIds(): string[] {
    return this.jobs.map((j) => j.id);
  }

  /** Each disk's copy now; a mirror that ended on its own (an error, the destination gone) throws MigrationError naming the disk. */
  async progress(): Promise<DiskSample[]> {
    const [jobs, nodes] = await Promise.all([
      this.qmp.execute('query-block-jobs'),
      this.qmp.execute('query-named-block-nodes', { flat: true }),
    ]);
    const byId = new Map(parseBlockJobs(jobs).map((j) => [j.id, j]));
    const dirty = dirtyBytesByNode(nodes);
    return this.jobs.map((job) => {
      const info = byId.get(job.id);
      if (info === undefined) throw this.endedError(job);
      return {
        disk: job.disk.disk,
        transferredBytes: info.offset,
        remainingBytes: Math.max(0, info.len - info.offset),
        totalBytes: info.len,
        dirtyBytes: dirty.get(job.disk.nodeName) ?? 0,
        ready: info.ready,
      };
    });
  }

  /**
   * The switch-over, with the source guest paused: ends every mirror with a
   * plain block-job-cancel, which on a ready mirror copies what is left and
   * completes without pivoting, and waits for each BLOCK_JOB_COMPLETED. A
   * mirror that is not ready, or ends with an error or cancelled, fails the
   * switch-over (MigrationError): the destination's copy is not complete.
   */
  async complete(timeoutMs = 60_000): Promise<void> {
    const samples = await this.progress();
    const notReady = samples.filter((s) => !s.ready).map((s) => `disk ${s.disk}`);
    if (notReady.length > 0) {
      throw new MigrationError(`cannot switch over: the copy of ${notReady.join(', ')} is not in step yet`);
    }
    for (const job of this.jobs) await this.call(blockJobCancel(job.id, false));
    await this.waitEnded(timeoutMs).catch(() => {
      // A ready mirror still has to write its last data to the destination: over a cut link it never can.
      const left = this.jobs.filter((j) => !this.ended.has(j.id)).map((j) => `disk ${j.disk.disk}`);
      throw new MigrationError(
        `the copy of ${left.join(', ')} did not complete within ${timeoutMs / 1000} s at the switch-over`,
      );
    });
    const failed = this.jobs
      .map((job) => ({ job, end: this.ended.get(job.id) }))
      .filter(({ end }) => end?.event !== 'BLOCK_JOB_COMPLETED' || end.error !== undefined);
    if (failed.length > 0) {
      throw new MigrationError(
        `the copy of ${failed.map(({ job, end }) => `disk ${job.disk.disk} (${end?.error ?? end?.event ?? 'no end'})`).join(', ')} did not complete`,
      );
    }
    await this.detachTargets();
  }

  /**
   * Gives up: force-cancels every running mirror, cuts this migration's NBD
   * connections, waits for the mirrors to end and removes the NBD nodes. The
   * guest goes on with its own images. Never throws; returns what could not be done.
   */
  async cancel(timeoutMs = 30_000): Promise<string[]> {
    const problems: string[] = [];
    if (this.qmp.connected) {
      // Over a cut link a request to the destination never ends: a guest write waits on it
      // (write-blocking), block-job-cancel can wait on it (seen after an agent restart), and
      // blockdev-del, which drains the node, would hang QEMU's main loop with it, even once
      // QEMU no longer lists the cancelled job. Every connection is cut first.
      problems.push(...(await this.cutConnections()));
      const running = new Set(
        parseBlockJobs(await this.qmp.execute('query-block-jobs').catch(() => [])).map((j) => j.id),
      );
      for (const job of this.jobs) {
        if (!job.started || this.ended.has(job.id) || !running.has(job.id)) continue;
        await this.call(blockJobCancel(job.id, true)).catch((err: unknown) => {
          // The cut connection ends the job on its own: gone between the query and the cancel is the goal.
          if (!isJobGone(err)) problems.push(describeError(err));
        });
      }
      await this.waitEnded(timeoutMs).catch((err: unknown) => problems.push(describeError(err)));
      problems.push(...(await this.detachTargets()));
    }
    this.stop();
    return problems;
  }

  /** Stops listening to QEMU's events (complete and cancel do it too). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const off of this.offEvents) off();
  }

  private async call(call: QmpCall): Promise<void> {
    await this.qmp.execute(call.command, call.args);
  }

  private endedError(job: Job): MigrationError {
    const end = this.ended.get(job.id);
    const why = end?.error ?? (end?.event === 'BLOCK_JOB_CANCELLED' ? 'cancelled' : 'ended');
    return new MigrationError(`the copy of disk ${job.disk.disk} stopped: ${why}`);
  }

  /** Until QEMU lists none of the started jobs any more (auto-dismiss removes a job once it ends). */
  private async waitEnded(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const started = new Set(this.jobs.filter((j) => j.started).map((j) => j.id));
    for (;;) {
      const listed = parseBlockJobs(await this.qmp.execute('query-block-jobs')).filter((j) =>
        started.has(j.id),
      );
      if (listed.length === 0) return;
      if (Date.now() > deadline) {
        throw new MigrationError(
          `disk copies still running after ${timeoutMs} ms: ${listed.map((j) => `${j.id} (${j.status})`).join(', ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Cuts the connections of this migration's NBD nodes (QMP yank); returns the failures. */
  private async cutConnections(): Promise<string[]> {
    try {
      const call = yankTargets(
        await this.qmp.execute('query-yank'),
        this.jobs.map((j) => j.target),
      );
      if (call !== undefined) await this.call(call);
      return [];
    } catch (err) {
      return [`cutting the connections to the destination: ${describeError(err)}`];
    }
  }

  /** Removes the NBD nodes this made; returns the failures. */
  private async detachTargets(): Promise<string[]> {
    const problems: string[] = [];
    for (const job of this.jobs.splice(0)) {
      await this.call({ command: 'blockdev-del', args: { 'node-name': job.target } }).catch((err: unknown) =>
        problems.push(`removing ${job.target}: ${describeError(err)}`),
      );
    }
    this.stop();
    return problems;
  }
}

/** QEMU's answer to cancelling a job it no longer has (it ended meanwhile). */
export function isJobGone(err: unknown): boolean {
  return err instanceof QmpCommandError && err.qemuClass === 'DeviceNotActive';
}
