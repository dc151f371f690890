import { UsageError } from '../errors.js';

/** One step of the downtime schedule: after `delaySeconds`, allow `downtimeMs` of downtime. */
export type DowntimeStep = readonly [delaySeconds: number, downtimeMs: number];

const MiB_PER_GiB = 1024;

function positive(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0)
    throw new UsageError(`${name} must be a number >= 0, got ${value}`);
}

/**
 * GiB of data a migration moves, as nova's driver.py `_live_migration_data_gb` counts
 * it: guest RAM, at least 2 GiB, plus for a block migration each disk, at least 2 GiB
 * each. A live migration (shared storage) copies no disk, so disks do not count.
 */
export function migrationDataGiB(
  kind: 'live' | 'block',
  memoryMiB: number,
  disksGiB: readonly number[] = [],
): number {
  positive('memoryMiB', memoryMiB);
  for (const d of disksGiB) positive('disk size (GiB)', d);
  let ramGiB = memoryMiB / MiB_PER_GiB;
  if (ramGiB < 2) ramGiB = 2;
  let diskGiB = 0;
  if (kind === 'block') {
    for (const size of disksGiB) diskGiB += size < 2 ? 2 : size;
  }
  return ramGiB + diskGiB;
}

/**
 * nova's nova/virt/libvirt/migration.py `downtime_steps(data_gb)`, exactly:
 *
 *     delay = int(delay * data_gb)
 *     base = downtime / steps
 *     offset = (downtime - base) / steps
 *     for i in range(steps + 1):
 *         yield (int(delay * i), int(base + offset * i))
 *
 * (true division, truncation by int()), so the schedule starts at downtime/steps ms at
 * time 0 and reaches `downtime` ms after steps x delay x data GiB seconds. nova applies
 * a step once the elapsed time is strictly greater than its delay.
 */
export function downtimeSteps(
  settings: { downtimeMs: number; steps: number; delaySecondsPerGiB: number },
  dataGiB: number,
): DowntimeStep[] {
  const { downtimeMs, steps } = settings;
  if (!Number.isInteger(steps) || steps < 1)
    throw new UsageError(`downtime steps must be a whole number >= 1, got ${steps}`);
  positive('downtimeMs', downtimeMs);
  positive('delaySecondsPerGiB', settings.delaySecondsPerGiB);
  positive('dataGiB', dataGiB);
  const delay = Math.trunc(settings.delaySecondsPerGiB * dataGiB);
  const base = downtimeMs / steps;
  const offset = (downtimeMs - base) / steps;
  const out: DowntimeStep[] = [];
  for (let i = 0; i <= steps; i++) out.push([Math.trunc(delay * i), Math.trunc(base + offset * i)]);
  return out;
}

/**
 * nova's completion timeout: `int(live_migration_completion_timeout * data_gb)`
 * seconds (driver.py `_live_migration_monitor`); 0 means no timeout.
 */
export function completionTimeoutSeconds(timeoutSecondsPerGiB: number, dataGiB: number): number {
  positive('completion timeout', timeoutSecondsPerGiB);
  positive('dataGiB', dataGiB);
  return Math.trunc(timeoutSecondsPerGiB * dataGiB);
}

/**
 * The step in force after `elapsedSeconds`, as nova's migration.py `update_downtime`
 * picks it: the last step whose delay is strictly less than the elapsed time
 * (undefined before the first step applies). The caller sets QEMU's downtime-limit
 * only when the step's value differs from the one already set.
 */
export function downtimeStepAt(
  steps: readonly DowntimeStep[],
  elapsedSeconds: number,
): DowntimeStep | undefined {
  let current: DowntimeStep | undefined;
  for (const step of steps) if (elapsedSeconds > step[0]) current = step;
  return current;
}

/**
 * nova's migration.py `should_trigger_timeout_action`: true once the elapsed time is
 * strictly greater than a non-zero completion timeout, and never again after the
 * switch to post-copy.
 */
export function completionTimeoutReached(
  elapsedSeconds: number,
  timeoutSeconds: number,
  inPostCopy: boolean,
): boolean {
  if (timeoutSeconds === 0 || inPostCopy) return false;
  return elapsedSeconds > timeoutSeconds;
}
