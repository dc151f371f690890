import {
  DiskMirrors,
  sumDiskSamples,
  type DiskSample,
  type MirroredDisk,
  type NbdAddress,
  type NbdClientTls,
} from '../block/index.js';
import { describeError } from '../errors.js';
import type { QmpClient } from '../qemu/index.js';
import type { IncomingReply } from './types.js';

/** How the source QEMU reaches the destination's NBD server, and what to close afterwards. */
export interface DiskTransport {
  target: NbdAddress;
  close(): Promise<void> | void;
}

/** A block migration's disks as the source driver copies them. */
export interface DiskCopyPlan {
  disks: readonly MirroredDisk[];
  /** Bytes/s per disk, 0 unlimited. */
  speed: number;
  /** The way to the destination's NBD server, from its answer: its TCP address, or a second relayed connection of the tunnel. */
  open(reply: IncomingReply): Promise<DiskTransport>;
}

/**
 * The disk copies of one block migration on the source: the way to the
 * destination, the mirrors, and what they last said. Before the RAM migration
 * the driver waits for every mirror to be ready; at the pause before the
 * switch-over it completes them; on a failure it cancels them (the source QEMU
 * stays on its own images throughout, see DiskMirrors).
 */
export class DiskCopy {
  private lastSamples: DiskSample[] = [];
  private done = false;
  private cancelled = false;

  private constructor(
    private readonly mirrors: DiskMirrors,
    private readonly transport: DiskTransport,
    readonly plan: DiskCopyPlan,
  ) {}

  static async start(
    qmp: QmpClient,
    plan: DiskCopyPlan,
    reply: IncomingReply,
    o: { prefix: string; tls: NbdClientTls | undefined },
  ): Promise<DiskCopy> {
    const transport = await plan.open(reply);
    try {
      const mirrors = await DiskMirrors.start(qmp, {
        prefix: o.prefix,
        target: transport.target,
        // QEMU's TLS only on a TCP connection: through the tunnel, the agents' TLS carries it.
        tls: transport.target.type === 'inet' ? o.tls : undefined,
        disks: plan.disks,
        speed: plan.speed,
      });
      return new DiskCopy(mirrors, transport, plan);
    } catch (err) {
      await Promise.resolve(transport.close()).catch(() => undefined);
      throw err;
    }
  }

  /** Each disk's copy now (the last figures once the copies ended). Throws when a copy stopped on its own. */
  async progress(): Promise<DiskSample[]> {
    if (this.done) return this.lastSamples;
    this.lastSamples = await this.mirrors.progress();
    return this.lastSamples;
  }

  /** The last figures, for the report. */
  get last(): readonly DiskSample[] {
    return this.lastSamples;
  }

  /** Bytes copied so far, over all disks. */
  get copiedBytes(): number {
    return sumDiskSamples(this.lastSamples).transferredBytes;
  }

  /** At the pause before the switch-over: every copy completed into the destination's images. */
  async complete(): Promise<void> {
    if (this.done) return;
    await this.progress();
    await this.mirrors.complete();
    this.done = true;
  }

  /**
   * Gives the copies up (the source goes on with its own images); returns what could not be
   * undone. Once: later calls return nothing.
   */
  async cancel(): Promise<string[]> {
    if (this.cancelled) return [];
    this.cancelled = true;
    this.done = true;
    return this.mirrors.cancel();
  }

  /** Closes the way to the destination (the tunnel's relayed connection); a failure changes nothing. */
  async close(): Promise<void> {
    this.mirrors.stop();
    await Promise.resolve(this.transport.close()).catch((err: unknown) => describeError(err));
  }
}
