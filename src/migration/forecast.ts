/**
 * Will pre-copy converge? A pure model of QEMU's iterations: the first pass
 * sends all guest RAM; each next pass sends what the guest dirtied during the
 * one before (at most all of RAM); the migration can stop the guest and finish
 * once what is left can be sent within the downtime limit.
 */

export interface ForecastInput {
  /** Guest RAM to send, bytes. */
  memoryBytes: number;
  /** How fast the guest dirties memory, bytes/s (from calc-dirty-rate or samples). */
  dirtyRateBps: number;
  /** What the link (or the bandwidth cap) carries, bytes/s. */
  throughputBps: number;
  /** The largest downtime the schedule will allow, ms. */
  downtimeLimitMs: number;
  /** Give up counting after this many passes. */
  maxPasses?: number;
  /** Block migration: disk data copied before the memory, bytes (over the same link). */
  diskBytes?: number;
}

export interface Forecast {
  converges: boolean;
  /** Passes until the final stop-and-copy (including it) when it converges. */
  passes: number;
  /** Expected total time, seconds (Infinity when it never converges). */
  seconds: number;
  /** Expected pause at the end, ms (what is left / throughput). */
  expectedDowntimeMs: number;
  /** One sentence an operator can act on. */
  summary: string;
}

function checkRate(name: string, value: number, allowZero: boolean): void {
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new RangeError(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} finite number, got ${value}`,
    );
  }
}

export function forecastPrecopy(input: ForecastInput): Forecast {
  const memory = forecastMemory(input);
  const diskBytes = input.diskBytes ?? 0;
  checkRate('diskBytes', diskBytes, true);
  if (diskBytes === 0) return memory;
  const diskSeconds = diskBytes / input.throughputBps;
  const gib = (diskBytes / 1024 ** 3).toFixed(1);
  return {
    ...memory,
    seconds: memory.seconds + diskSeconds,
    summary: `copies ${gib} GiB of disk first (about ${Math.ceil(diskSeconds)} s), then ${memory.summary}`,
  };
}

function forecastMemory(input: ForecastInput): Forecast {
  const { memoryBytes, dirtyRateBps, throughputBps, downtimeLimitMs } = input;
  checkRate('memoryBytes', memoryBytes, false);
  checkRate('dirtyRateBps', dirtyRateBps, true);
  checkRate('throughputBps', throughputBps, false);
  checkRate('downtimeLimitMs', downtimeLimitMs, false);
  const maxPasses = input.maxPasses ?? 30;
  const fits = (bytes: number): boolean => (bytes / throughputBps) * 1000 <= downtimeLimitMs;
  let toSend = memoryBytes;
  let seconds = 0;
  for (let pass = 1; pass <= maxPasses; pass++) {
    const passSeconds = toSend / throughputBps;
    seconds += passSeconds;
    const dirtied = Math.min(memoryBytes, dirtyRateBps * passSeconds);
    if (fits(dirtied)) {
      const downtime = (dirtied / throughputBps) * 1000;
      return {
        converges: true,
        passes: pass + 1,
        seconds: seconds + downtime / 1000,
        expectedDowntimeMs: downtime,
        summary: `converges in about ${Math.ceil(seconds + downtime / 1000)} s over ${pass + 1} passes, pausing the guest about ${Math.ceil(downtime)} ms`,
      };
    }
    if (dirtied >= toSend && pass > 1) break;
    toSend = dirtied;
  }
  const steady = Math.min(memoryBytes, dirtyRateBps * (memoryBytes / throughputBps));
  const downtime = (steady / throughputBps) * 1000;
  const ratio = dirtyRateBps / throughputBps;
  return {
    converges: false,
    passes: maxPasses,
    seconds: Infinity,
    expectedDowntimeMs: downtime,
    summary:
      `will not converge by itself: the guest dirties ${(ratio * 100).toFixed(0)}% of what the link carries, ` +
      `so about ${Math.ceil(downtime)} ms of data stays dirty against a downtime limit of ${downtimeLimitMs} ms; ` +
      'allow auto-converge or post-copy, raise the downtime, or use force_complete',
  };
}
