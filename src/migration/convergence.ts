/**
 * Pure decisions the source monitor loop takes on every tick: which downtime
 * step to send, whether progress has stalled, what a timeout does (the
 * completion timeout itself is src/policy's completionTimeoutReached). No clock and no I/O here; the loop passes the numbers in.
 */

import { downtimeStepAt, type DowntimeStep, type MigrationSettings } from '../policy/index.js';

export type DowntimeSteps = readonly DowntimeStep[];

/**
 * The downtime limit to send to QEMU now, or undefined when the step due is
 * already in force (nova only sends changes). Which step is due follows nova's
 * monitor loop: the last one whose delay the elapsed time has passed.
 */
export function downtimeChange(
  steps: DowntimeSteps,
  elapsedSeconds: number,
  applied: number | undefined,
): number | undefined {
  const due = downtimeStepAt(steps, elapsedSeconds)?.[1];
  return due !== undefined && due !== applied ? due : undefined;
}

/** Progress tracking state carried between ticks. */
export interface StallState {
  /** Lowest remaining byte count seen so far. */
  lowestRemaining: number;
  /** When `lowestRemaining` last fell (seconds since start). */
  lastProgressAt: number;
}

/**
 * Updates the stall tracker with a new remaining-bytes sample and says whether
 * the migration made no progress (remaining never fell below its lowest value)
 * for longer than `stallSeconds` (0 disables the check), as nova's old
 * progress_timeout did.
 */
export function trackProgress(
  state: StallState | undefined,
  remaining: number,
  elapsedSeconds: number,
  stallSeconds: number,
): { state: StallState; stalled: boolean } {
  const next: StallState =
    state === undefined || remaining < state.lowestRemaining
      ? { lowestRemaining: remaining, lastProgressAt: elapsedSeconds }
      : state;
  const stalled = stallSeconds > 0 && elapsedSeconds - next.lastProgressAt > stallSeconds;
  return { state: next, stalled };
}

/** Disk copy progress carried between looks at the mirrors. */
export interface CopyState {
  /** Bytes the mirrors had copied at the last look at which that number grew. */
  copiedBytes: number;
  /** When it last grew (seconds since the copies started). */
  lastProgressAt: number;
}

/**
 * How long nothing may move while the disks are mirrored: the plan's disk stall limit, or
 * `stallSeconds` for settings made before there was one.
 */
export function diskStallLimit(
  settings: Pick<MigrationSettings, 'stallSeconds' | 'diskStallSeconds'>,
): number {
  return settings.diskStallSeconds ?? settings.stallSeconds;
}

/**
 * Updates the disk copy tracker with the bytes copied so far and says whether
 * the copies moved nothing for longer than `stallSeconds` (0 disables the
 * check). Copied bytes, not remaining ones: the guest's writes make the
 * remaining figure grow while the copy goes on, and over a cut link a mirror
 * copies nothing at all.
 */
export function trackCopy(
  state: CopyState | undefined,
  copiedBytes: number,
  elapsedSeconds: number,
  stallSeconds: number,
): { state: CopyState; stalled: boolean } {
  const next: CopyState =
    state === undefined || copiedBytes > state.copiedBytes
      ? { copiedBytes, lastProgressAt: elapsedSeconds }
      : state;
  const stalled = stallSeconds > 0 && elapsedSeconds - next.lastProgressAt > stallSeconds;
  return { state: next, stalled };
}

/** What the loop does when the completion timeout or the stall detector fires. */
export type TimeoutResponse = 'abort' | 'postcopy' | 'pause';

/**
 * nova's `live_migration_timeout_action`: `abort` cancels; `force_complete`
 * switches to post-copy when it is enabled for this migration, otherwise pauses
 * the guest so the remaining pages can be sent.
 */
export function timeoutResponse(
  action: 'abort' | 'force_complete',
  postCopyEnabled: boolean,
): TimeoutResponse {
  if (action === 'abort') return 'abort';
  return postCopyEnabled ? 'postcopy' : 'pause';
}
