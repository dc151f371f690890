import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import {
  completionTimeoutReached,
  completionTimeoutSeconds,
  downtimeStepAt,
  downtimeSteps,
  migrationDataGiB,
} from './downtime-steps.js';

describe('migrationDataGiB (nova _live_migration_data_gb)', () => {
  it('counts RAM with a floor of 2 GiB', () => {
    assert.equal(migrationDataGiB('live', 512), 2);
    assert.equal(migrationDataGiB('live', 2048), 2);
    assert.equal(migrationDataGiB('live', 3000), 2.9296875);
    assert.equal(migrationDataGiB('live', 16384), 16);
  });

  it('adds each disk of a block migration with a floor of 2 GiB each', () => {
    assert.equal(migrationDataGiB('block', 1024, [1, 10]), 2 + 2 + 10);
    assert.equal(migrationDataGiB('block', 8192, [0.5]), 8 + 2);
  });

  it('ignores disks for a live migration (shared storage: nova copies no disk)', () => {
    assert.equal(migrationDataGiB('live', 8192, [40]), 8);
  });

  it('rejects nonsense early', () => {
    assert.throws(() => migrationDataGiB('live', -1), UsageError);
    assert.throws(() => migrationDataGiB('block', 1024, [Number.NaN]), UsageError);
  });
});

describe('downtimeSteps (nova migration.downtime_steps)', () => {
  it("reproduces the example in nova's docstring (10 steps, 30 s, 3 GB, 400 ms)", () => {
    assert.deepEqual(downtimeSteps({ downtimeMs: 400, steps: 10, delaySecondsPerGiB: 30 }, 3), [
      [0, 40],
      [90, 76],
      [180, 112],
      [270, 148],
      [360, 184],
      [450, 220],
      [540, 256],
      [630, 292],
      [720, 328],
      [810, 364],
      [900, 400],
    ]);
  });

  it("uses nova's defaults on a small guest (2 GiB floor: a step every 150 s)", () => {
    const steps = downtimeSteps(
      { downtimeMs: 500, steps: 10, delaySecondsPerGiB: 75 },
      migrationDataGiB('live', 1024),
    );
    assert.equal(steps.length, 11);
    assert.deepEqual(steps[0], [0, 50]);
    assert.deepEqual(steps[1], [150, 95]);
    assert.deepEqual(steps[10], [1500, 500]);
  });

  it('truncates like Python int() with fractional data sizes and uneven steps', () => {
    // Computed with nova's Python code: downtime_steps(500, 3, 75, 2.9296875).
    assert.deepEqual(downtimeSteps({ downtimeMs: 500, steps: 3, delaySecondsPerGiB: 75 }, 2.9296875), [
      [0, 166],
      [219, 277],
      [438, 388],
      [657, 500],
    ]);
  });
});

describe('completionTimeoutSeconds', () => {
  it('is int(completion_timeout x data GiB), 0 meaning none', () => {
    assert.equal(completionTimeoutSeconds(800, 2), 1600);
    assert.equal(completionTimeoutSeconds(800, 2.9296875), 2343);
    assert.equal(completionTimeoutSeconds(0, 64), 0);
  });
});

describe('applying the schedule as nova does', () => {
  const steps = downtimeSteps({ downtimeMs: 400, steps: 10, delaySecondsPerGiB: 30 }, 3);

  it('has no step in force at exactly 0 s, then the last step whose delay has passed', () => {
    assert.equal(downtimeStepAt(steps, 0), undefined);
    assert.deepEqual(downtimeStepAt(steps, 0.5), [0, 40]);
    assert.deepEqual(downtimeStepAt(steps, 90), [0, 40]);
    assert.deepEqual(downtimeStepAt(steps, 90.1), [90, 76]);
    assert.deepEqual(downtimeStepAt(steps, 10_000), [900, 400]);
  });

  it('triggers the timeout action only past a non-zero timeout and not in post-copy', () => {
    assert.equal(completionTimeoutReached(1600, 1600, false), false);
    assert.equal(completionTimeoutReached(1600.5, 1600, false), true);
    assert.equal(completionTimeoutReached(1e9, 0, false), false);
    assert.equal(completionTimeoutReached(2000, 1600, true), false);
  });
});
