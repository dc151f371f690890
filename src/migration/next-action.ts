import { completionTimeoutReached, type MigrationSettings } from '../policy/index.js';
import {
  diskStallLimit,
  downtimeChange,
  timeoutResponse,
  trackCopy,
  trackProgress,
  type CopyState,
  type StallState,
} from './convergence.js';
import type { MigrationSample } from './types.js';

/** What the pre-copy monitor carries from one look at QEMU to the next. */
export interface MonitorState {
  readonly settings: Pick<
    MigrationSettings,
    | 'downtimeSteps'
    | 'completionTimeoutSeconds'
    | 'timeoutAction'
    | 'postCopy'
    | 'stallSeconds'
    | 'diskStallSeconds'
  >;
  /** The downtime limit QEMU has now. */
  readonly downtimeLimitMs: number | undefined;
  readonly stall: StallState | undefined;
  /** Block migration: bytes moved (memory and disks) and when that last grew. */
  readonly moved: CopyState | undefined;
  /** The completion timeout, a stall or a force-complete was acted on (once per migration). */
  readonly timeoutHandled: boolean;
  /** The guest was paused to force completion. */
  readonly paused: boolean;
  /** Cancelling: why, and whether the operator asked (cancelled) or a timeout did (failed). */
  readonly abort: { readonly reason: string; readonly byOperator: boolean } | undefined;
  /** The cancel was announced (QEMU is asked again on every look until it cancels). */
  readonly cancelAnnounced: boolean;
  /** The operator asked to force completion. */
  readonly forceRequested: boolean;
}

/** One thing to do after a look at QEMU. */
export type MonitorAction =
  | { readonly kind: 'wait' }
  | { readonly kind: 'completed' }
  | { readonly kind: 'qemu-failed' }
  | { readonly kind: 'cancelled'; readonly message: string }
  /** QEMU switched to post-copy: the post-copy phase takes over. */
  | { readonly kind: 'postcopy' }
  /** Block migration: QEMU paused the guest before the switch-over; complete the disk copies, then let it go on. */
  | { readonly kind: 'switch-over' }
  | { readonly kind: 'cancel'; readonly event: string | undefined }
  | { readonly kind: 'start-postcopy'; readonly event: string }
  | { readonly kind: 'pause'; readonly event: string }
  | { readonly kind: 'set-downtime'; readonly downtimeMs: number };

/** The state before the first look: the first downtime step is already in force (set with the parameters). */
export function initialMonitorState(settings: MonitorState['settings']): MonitorState {
  return {
    settings,
    downtimeLimitMs: downtimeChange(settings.downtimeSteps, 0, undefined),
    stall: undefined,
    moved: undefined,
    timeoutHandled: false,
    paused: false,
    abort: undefined,
    cancelAnnounced: false,
    forceRequested: false,
  };
}

/**
 * What the source does after one look at QEMU during pre-copy, and the state to
 * carry: stop when QEMU completed, failed or was cancelled; hand over to the
 * post-copy phase once QEMU switched; cancel when asked; at a pause before the
 * switch-over (block migration) have the disk copies completed; with mirrored disks, cancel
 * when neither memory nor disks moved for diskStallSeconds (guest writes wait on the
 * mirrors meanwhile: no timeout action helps them); on a force-complete,
 * the completion timeout or a stall, do what nova's timeout action says (cancel,
 * switch to post-copy, or pause the guest), once; otherwise send the downtime
 * step that is due. Pure: time is the sample's elapsedMs.
 */
export function nextAction(
  state: MonitorState,
  sample: Pick<MigrationSample, 'status' | 'elapsedMs' | 'remainingBytes'> &
    Partial<Pick<MigrationSample, 'transferredBytes' | 'disks'>>,
): { state: MonitorState; action: MonitorAction } {
  const { status } = sample;
  const elapsed = sample.elapsedMs / 1000;
  const at = `${elapsed.toFixed(1)} s`;
  const stay = (action: MonitorAction): { state: MonitorState; action: MonitorAction } => ({ state, action });
  if (status === 'completed') return stay({ kind: 'completed' });
  if (status === 'failed') return stay({ kind: 'qemu-failed' });
  if (status === 'cancelled') {
    const abort = state.abort ?? { reason: 'QEMU cancelled it', byOperator: false };
    return stay({
      kind: 'cancelled',
      message: `migration ${abort.byOperator ? 'cancelled' : 'aborted'}: ${abort.reason}`,
    });
  }
  if (status.startsWith('postcopy-')) return stay({ kind: 'postcopy' });
  if (state.abort !== undefined) {
    if (status === 'cancelling') return stay({ kind: 'wait' });
    const event = state.cancelAnnounced ? undefined : `abort requested at ${at}`;
    return { state: { ...state, cancelAnnounced: true }, action: { kind: 'cancel', event } };
  }
  if (status === 'pre-switchover') return stay({ kind: 'switch-over' });
  const { settings } = state;
  const progress = trackProgress(state.stall, sample.remainingBytes, elapsed, settings.stallSeconds);
  let next: MonitorState = { ...state, stall: progress.state };
  if (sample.disks !== undefined) {
    const limit = diskStallLimit(settings);
    const bytes = (sample.transferredBytes ?? 0) + sample.disks.reduce((n, d) => n + d.transferredBytes, 0);
    const moved = trackCopy(state.moved, bytes, elapsed, limit);
    next = { ...next, moved: moved.state };
    if (moved.stalled) {
      const reason = `neither the memory nor the disk copy moved for ${limit} s while the disks are mirrored`;
      return {
        state: { ...next, abort: { reason, byOperator: false }, cancelAnnounced: true },
        action: { kind: 'cancel', event: `${reason} at ${at}: abort (guest writes wait on the mirrors)` },
      };
    }
  }
  if (!state.timeoutHandled && !state.paused) {
    let trigger: string | undefined;
    if (state.forceRequested) trigger = 'force-complete requested by the operator';
    else if (completionTimeoutReached(elapsed, settings.completionTimeoutSeconds, false))
      trigger = `completion timeout of ${settings.completionTimeoutSeconds} s reached`;
    else if (progress.stalled) trigger = `no progress for ${settings.stallSeconds} s`;
    if (trigger !== undefined) {
      const response = timeoutResponse(
        state.forceRequested ? 'force_complete' : settings.timeoutAction,
        settings.postCopy,
      );
      const event = `${trigger} at ${at}: ${response}`;
      const handled = { ...next, timeoutHandled: true };
      if (response === 'abort') {
        const abort = { reason: trigger, byOperator: false };
        return { state: { ...handled, abort, cancelAnnounced: true }, action: { kind: 'cancel', event } };
      }
      if (response === 'postcopy') return { state: handled, action: { kind: 'start-postcopy', event } };
      return { state: { ...handled, paused: true }, action: { kind: 'pause', event } };
    }
  }
  const change = downtimeChange(settings.downtimeSteps, elapsed, state.downtimeLimitMs);
  if (change !== undefined) {
    return {
      state: { ...next, downtimeLimitMs: change },
      action: { kind: 'set-downtime', downtimeMs: change },
    };
  }
  return { state: next, action: { kind: 'wait' } };
}
