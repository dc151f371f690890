import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forecastPrecopy } from './forecast.js';

const MiB = 1024 * 1024;

describe('pre-copy forecast', () => {
  it('an idle guest converges after one pass plus an empty stop-and-copy', () => {
    const f = forecastPrecopy({
      memoryBytes: 1024 * MiB,
      dirtyRateBps: 0,
      throughputBps: 1024 * MiB,
      downtimeLimitMs: 300,
    });
    assert.equal(f.converges, true);
    assert.equal(f.passes, 2);
    assert.equal(f.expectedDowntimeMs, 0);
    assert.ok(Math.abs(f.seconds - 1) < 1e-9);
  });

  it('a guest dirtying a tenth of the link converges geometrically', () => {
    // 1 GiB at 1 GiB/s: pass 1 1 s, dirties 100 MiB; pass 2 0.1 s, dirties 10 MiB = 9.8 ms <= 50 ms.
    const f = forecastPrecopy({
      memoryBytes: 1024 * MiB,
      dirtyRateBps: 102.4 * MiB,
      throughputBps: 1024 * MiB,
      downtimeLimitMs: 50,
    });
    assert.equal(f.converges, true);
    assert.equal(f.passes, 3);
    assert.ok(Math.abs(f.expectedDowntimeMs - 10) < 0.01, String(f.expectedDowntimeMs));
    assert.ok(Math.abs(f.seconds - 1.11) < 0.001, String(f.seconds));
  });

  it('a guest dirtying faster than the link never converges, and the summary says what to do', () => {
    const f = forecastPrecopy({
      memoryBytes: 256 * MiB,
      dirtyRateBps: 256 * MiB,
      throughputBps: 119 * MiB,
      downtimeLimitMs: 500,
    });
    assert.equal(f.converges, false);
    assert.equal(f.seconds, Infinity);
    assert.ok(f.expectedDowntimeMs > 2000, String(f.expectedDowntimeMs));
    assert.match(f.summary, /will not converge.*auto-converge or post-copy/);
  });

  it('forecasts no convergence at 500 ms for the rates the convergence e2e run measured on the 1 Gbit/s link', () => {
    // Its samples: the guest dirtied up to 118 489 088 B/s while the link carried 834.6 Mbit/s on average.
    const f = forecastPrecopy({
      memoryBytes: 256 * MiB,
      dirtyRateBps: 118_489_088,
      throughputBps: (834.6 * 1e6) / 8,
      downtimeLimitMs: 500,
    });
    assert.equal(f.converges, false);
  });

  it('rejects nonsense input naming the field', () => {
    assert.throws(
      () => forecastPrecopy({ memoryBytes: 0, dirtyRateBps: 0, throughputBps: 1, downtimeLimitMs: 1 }),
      /memoryBytes/,
    );
    assert.throws(
      () => forecastPrecopy({ memoryBytes: 1, dirtyRateBps: -1, throughputBps: 1, downtimeLimitMs: 1 }),
      /dirtyRateBps/,
    );
    assert.throws(
      () => forecastPrecopy({ memoryBytes: 1, dirtyRateBps: 0, throughputBps: NaN, downtimeLimitMs: 1 }),
      /throughputBps/,
    );
  });

  it('a block migration copies its disks first: their time comes before the memory and the summary says so', () => {
    const GiB = 1024 ** 3;
    const memory = { memoryBytes: GiB, dirtyRateBps: 0, throughputBps: GiB / 4, downtimeLimitMs: 300 };
    const without = forecastPrecopy(memory);
    const withDisks = forecastPrecopy({ ...memory, diskBytes: 2 * GiB });
    assert.equal(withDisks.seconds, without.seconds + 8);
    assert.equal(withDisks.converges, without.converges);
    assert.equal(withDisks.summary, `copies 2.0 GiB of disk first (about 8 s), then ${without.summary}`);
    assert.throws(() => forecastPrecopy({ ...memory, diskBytes: -1 }), /diskBytes must be a non-negative/);
  });
});
