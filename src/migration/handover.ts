import { PeerError, describeError } from '../errors.js';

/**
 * Where the guest is after a hand-over whose answer was lost:
 * - `running`: the destination runs it; the source must quit its copy;
 * - `dropped`: the destination dropped its copy; the source resumes;
 * - `not-started`: the destination cannot be reached, but the request to start
 *   the guest never reached it either; the source resumes, and the destination
 *   drops its paused copy when it is told to or when its agent restarts.
 */
export type HandOverOutcome = 'running' | 'dropped' | 'not-started';

export interface SettleHandOverOptions {
  /** The destination: `abort` drops its copy, or answers 'running' when the guest already runs there. */
  peer: {
    readonly name: string;
    abort(migrationId: string, reason: string): Promise<'dropped' | 'running'>;
  };
  migrationId: string;
  /** What put the hand-over in doubt (the error of the request to start the guest). */
  cause: unknown;
  sleep: (ms: number) => Promise<void>;
  /** Said when waiting starts and then about once a minute (the agent journals it). */
  onWaiting?: (message: string) => void;
}

/** Back-off between attempts to reach the destination: 1, 2, 4, 8, then every 10 s. */
export function settleRetryDelayMs(attempt: number): number {
  return Math.min(10_000, 1000 * 2 ** Math.min(attempt, 4));
}

/**
 * Settles a hand-over in doubt, so that the guest never runs on both hosts: asks
 * the destination to drop its copy, which it refuses if the guest already runs
 * there. While the destination cannot be reached and the request to start the
 * guest may have reached it, the answer is unknown: this keeps asking, for as
 * long as it takes, and the source guest stays paused meanwhile. Two running
 * copies of one VM (both writing the same disks) would be worse than a pause.
 */
export async function settleHandOver(o: SettleHandOverOptions): Promise<HandOverOutcome> {
  const startMayHaveArrived = !(o.cause instanceof PeerError && o.cause.notDelivered);
  let waitedMs = 0;
  let saidAtMs = -Infinity;
  for (let attempt = 0; ; attempt++) {
    try {
      return await o.peer.abort(o.migrationId, `the hand-over answer was lost: ${describeError(o.cause)}`);
    } catch (err) {
      if (!startMayHaveArrived) return 'not-started';
      if (waitedMs - saidAtMs >= 60_000) {
        saidAtMs = waitedMs;
        o.onWaiting?.(
          `hand-over in doubt for ${Math.round(waitedMs / 1000)} s: ${o.peer.name} may run the guest but does not answer ` +
            `(${describeError(err)}); the source guest stays paused until ${o.peer.name} says whether it runs it`,
        );
      }
      const delay = settleRetryDelayMs(attempt);
      await o.sleep(delay);
      waitedMs += delay;
    }
  }
}
