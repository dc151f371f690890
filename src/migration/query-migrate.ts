import type { MigrationSample } from './types.js';

/** QEMU's answer to query-migrate, the parts vmferry reads. */
export interface QueryMigrate {
  status?: string;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'cpu-throttle-percentage'?: number;
  'error-desc'?: string;
  ram?: {
    transferred?: number;
    remaining?: number;
    total?: number;
    'dirty-pages-rate'?: number;
    'page-size'?: number;
    mbps?: number;
    'dirty-sync-count'?: number;
    /** Pages the destination asked for in post-copy. */
    'postcopy-requests'?: number;
    /** Bytes sent after the switch to post-copy (QEMU 7.0 and later). */
    'postcopy-bytes'?: number;
  };
}

/** Migration statuses in which the source QEMU is still sending (pre-copy). */
export const SENDING_STATUSES = ['active', 'setup', 'cancelling', 'pre-switchover', 'device', 'wait-unplug'];

/** Once post-copy started, the guest runs on the destination: the source must not resume. */
export const POSTCOPY_STATUSES = ['postcopy-active', 'postcopy-paused', 'postcopy-recover'];

/**
 * Whether the source QEMU's migration switched to post-copy at some point (it may
 * have completed since): the guest then ran on the destination, which alone holds
 * its newest state.
 */
export function wentThroughPostcopy(info: QueryMigrate): boolean {
  if (POSTCOPY_STATUSES.includes(info.status ?? '')) return true;
  return (info.ram?.['postcopy-bytes'] ?? 0) > 0 || (info.ram?.['postcopy-requests'] ?? 0) > 0;
}

/** One sample from QEMU's answer, `elapsedMs` after QEMU started sending, taken at `time` (epoch ms). */
export function toSample(
  info: QueryMigrate,
  elapsedMs: number,
  downtimeLimitMs: number | undefined,
  time: number,
): MigrationSample {
  const ram = info.ram ?? {};
  return {
    time,
    elapsedMs,
    status: info.status ?? 'none',
    transferredBytes: ram.transferred ?? 0,
    remainingBytes: ram.remaining ?? 0,
    totalBytes: ram.total ?? 0,
    dirtyRateBps: (ram['dirty-pages-rate'] ?? 0) * (ram['page-size'] ?? 4096),
    throughputMbps: ram.mbps ?? 0,
    pass: ram['dirty-sync-count'] ?? 0,
    expectedDowntimeMs: info['expected-downtime'] ?? 0,
    cpuThrottlePct: info['cpu-throttle-percentage'] ?? 0,
    downtimeLimitMs,
  };
}
