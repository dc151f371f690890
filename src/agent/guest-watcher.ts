import { setTimeout as sleep } from 'node:timers/promises';
import {
  GuestSerialParser,
  assessGuestHealth,
  type GuestHealth,
  type GuestHeartbeatEvent,
  type GuestReadyEvent,
} from '../guest/index.js';
import { followFile, type FileFollower } from '../qemu/index.js';

const KEEP_HEARTBEATS = 300;

/**
 * Reads a VM's serial log as it grows and keeps what the guest workload says
 * about itself: its ready line and its recent heartbeats.
 */
export class GuestWatcher {
  private readonly parser = new GuestSerialParser();
  private readonly follower: FileFollower;
  private readonly heartbeats: GuestHeartbeatEvent[] = [];
  ready: GuestReadyEvent | undefined;

  constructor(serialLog: string) {
    this.follower = followFile(serialLog, (text) => this.onText(text), { intervalMs: 200 });
  }

  /** The newest heartbeat, if any arrived. */
  get last(): GuestHeartbeatEvent | undefined {
    return this.heartbeats.at(-1);
  }

  health(options: { afterSeq?: number; minOk?: number } = {}): GuestHealth {
    return assessGuestHealth(this.heartbeats, options);
  }

  /**
   * Waits until the guest has reported `minOk` advancing OK heartbeats after
   * `afterSeq` (healthy), reports CORRUPT, or `timeoutMs` passes (stalled).
   */
  async waitHealthy(
    options: { afterSeq?: number; minOk?: number; timeoutMs?: number } = {},
  ): Promise<GuestHealth> {
    const deadline = Date.now() + (options.timeoutMs ?? 15_000);
    for (;;) {
      const health = this.health(options);
      if (health.state !== 'stalled' || Date.now() >= deadline) return health;
      await sleep(200);
    }
  }

  stop(): void {
    this.follower.stop();
  }

  private onText(text: string): void {
    for (const event of this.parser.push(text)) {
      if (event.kind === 'ready') this.ready = event;
      else if (event.kind === 'heartbeat') {
        this.heartbeats.push(event);
        if (this.heartbeats.length > KEEP_HEARTBEATS)
          this.heartbeats.splice(0, this.heartbeats.length - KEEP_HEARTBEATS);
      }
    }
  }
}
