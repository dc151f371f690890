import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { downtimeSteps } from '../policy/index.js';
import {
  downtimeChange,
  timeoutResponse,
  trackCopy,
  trackProgress,
  type CopyState,
  type StallState,
} from './convergence.js';

describe('downtime schedule as the monitor loop applies it', () => {
  // nova's defaults for a 2 GiB guest: 500 ms in 10 steps, 75 s/GiB -> a step every 150 s.
  const steps = downtimeSteps({ downtimeMs: 500, steps: 10, delaySecondsPerGiB: 75 }, 2);

  it('sends the first step once time has passed, then only changes (as nova does)', () => {
    assert.equal(downtimeChange(steps, 0, undefined), undefined, 'nova compares elapsed > delay strictly');
    assert.equal(downtimeChange(steps, 0.5, undefined), 50);
    assert.equal(downtimeChange(steps, 10, 50), undefined, 'the same step is not sent again');
    assert.equal(downtimeChange(steps, 150.5, 50), 95);
    assert.equal(downtimeChange(steps, 10_000, 95), 500, 'after the last delay the full downtime applies');
    assert.equal(downtimeChange(steps, 10_000, 500), undefined);
  });
});

describe('stall detection', () => {
  it('reports a stall only after remaining memory has not fallen for the configured time', () => {
    let state: StallState | undefined;
    const feed = (remaining: number, t: number): boolean => {
      const r = trackProgress(state, remaining, t, 10);
      state = r.state;
      return r.stalled;
    };
    assert.equal(feed(1000, 0), false);
    assert.equal(feed(800, 2), false);
    assert.equal(feed(900, 8), false, 'a rise is not progress, but 6 s is under the limit');
    assert.equal(feed(850, 12.5), true, 'no new low since t=2');
    assert.equal(feed(700, 13), false, 'a new low resets the clock');
  });

  it('is off with 0', () => {
    assert.equal(trackProgress({ lowestRemaining: 1, lastProgressAt: 0 }, 5, 1e6, 0).stalled, false);
  });
});

describe('timeout action', () => {
  it('abort cancels; force_complete switches to post-copy when enabled, else pauses', () => {
    assert.equal(timeoutResponse('abort', true), 'abort');
    assert.equal(timeoutResponse('force_complete', true), 'postcopy');
    assert.equal(timeoutResponse('force_complete', false), 'pause');
  });
});

describe('disk copy stall detection', () => {
  it('counts from the last look at which the copied bytes grew, whatever the remaining figure does', () => {
    let state: CopyState | undefined;
    const looks: [number, number, boolean][] = [
      [0, 0, false],
      [8 << 20, 2, false],
      [8 << 20, 12, false],
      [8 << 20, 12.5, true],
      [9 << 20, 13, false],
      [9 << 20, 23, false],
      [9 << 20, 23.1, true],
    ];
    for (const [copied, t, stalled] of looks) {
      const r = trackCopy(state, copied, t, 10);
      state = r.state;
      assert.equal(r.stalled, stalled, `at ${t} s`);
    }
    assert.deepEqual(state, { copiedBytes: 9 << 20, lastProgressAt: 13 });
  });

  it('never stalls with the check off (0)', () => {
    assert.equal(trackCopy({ copiedBytes: 5, lastProgressAt: 0 }, 5, 1e6, 0).stalled, false);
  });
});
