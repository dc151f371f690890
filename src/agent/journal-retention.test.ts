import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import type { MigrationSample } from '../migration/index.js';
import { openJournal, type Journal } from './journal.js';
import { RETENTION_SWEEP_MS, keepJournalTrimmed } from './journal-retention.js';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';

const DAY = 24 * 3600 * 1000;

function sample(time: number): MigrationSample {
  return {
    time,
    elapsedMs: 0,
    status: 'active',
    transferredBytes: 1,
    remainingBytes: 1,
    totalBytes: 2,
    dirtyRateBps: 0,
    throughputMbps: 0,
    pass: 1,
    expectedDowntimeMs: 0,
    cpuThrottlePct: 0,
    downtimeLimitMs: undefined,
  };
}

describe('journal retention', () => {
  let root: string;
  let clock: number;
  let journal: Journal;
  let n = 0;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-retention-test-'));
  });
  after(async () => {
    journal?.close();
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(() => {
    journal?.close();
    n += 1;
    clock = 1_700_000_000_000;
    journal = openJournal(join(root, `journal-${n}.sqlite`), { now: () => clock });
  });

  /** A migration started at the current clock, sampled twice, ending `lastsMs` later in `end`. */
  function migration(id: string, lastsMs: number, end: 'completed' | 'failed' | undefined): void {
    journal.createMigration({
      id,
      vm: 'vm',
      role: 'source',
      peer: 'b',
      transport: 'native',
      plan: EXAMPLE_SETTINGS,
    });
    journal.setMigrationState(id, 'migrating');
    journal.addSample(id, sample(clock));
    clock += lastsMs;
    journal.addSample(id, sample(clock));
    if (end !== undefined) journal.setMigrationState(id, end);
  }

  it('forgets finished migrations, their events and samples, once older than the retention', () => {
    migration('old-done', 1000, 'completed');
    clock += DAY;
    migration('old-failed', 1000, 'failed');
    clock += 5 * DAY;
    migration('recent', 1000, 'completed');
    clock += 2 * DAY;
    // old-done ended 8 days + 2 s ago, old-failed 7 days + 1 s ago, recent 2 days ago.
    assert.deepEqual(journal.prune(7), { migrations: 2, samples: 4 });
    assert.deepEqual(
      journal.listMigrations().map((m) => m.id),
      ['recent'],
    );
    assert.deepEqual(journal.migrationEvents('old-done'), []);
    assert.deepEqual(journal.samples('old-failed'), []);
    assert.equal(journal.samples('recent').length, 2);
    assert.equal(journal.migrationEvents('recent').length, 3);
  });

  it('keeps a migration that ended just inside the retention, and every migration in flight', () => {
    migration('edge', 0, 'completed');
    clock += 7 * DAY;
    assert.deepEqual(journal.prune(7), { migrations: 0, samples: 0 }, 'exactly 7 days old is kept');
    migration('running', 0, undefined);
    clock += 30 * DAY;
    journal.addSample('running', sample(clock));
    assert.deepEqual(journal.prune(7), { migrations: 1, samples: 4 });
    assert.deepEqual(
      journal.listMigrations().map((m) => m.id),
      ['running'],
    );
    assert.deepEqual(
      journal.samples('running').map((s) => s.time),
      [clock],
      "an in-flight migration's stale samples go, the migration stays",
    );
  });

  it('keeps everything with 0 days and refuses a negative retention', () => {
    migration('old', 0, 'completed');
    clock += 3650 * DAY;
    assert.deepEqual(journal.prune(0), { migrations: 0, samples: 0 });
    assert.equal(journal.listMigrations().length, 1);
    assert.throws(
      () => journal.prune(-1),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message === 'journal retention must be a number of days >= 0, got -1',
    );
  });

  it('prunes at start-up and then on a daily timer, which it stops', () => {
    migration('a', 0, 'completed');
    clock += 2 * DAY;
    const lines: string[] = [];
    let tick: (() => void) | undefined;
    let period = 0;
    let cancelled: unknown;
    const timer = { unref: () => undefined };
    const stop = keepJournalTrimmed(journal, {
      days: 1,
      log: (l) => lines.push(l),
      every: (fn, ms) => {
        tick = fn;
        period = ms;
        return timer;
      },
      cancel: (t) => (cancelled = t),
    });
    assert.deepEqual(lines, ['journal: pruned 1 migration(s) and 2 sample(s) older than 1 day(s)']);
    assert.equal(period, RETENTION_SWEEP_MS);
    migration('b', 0, 'completed');
    tick?.();
    assert.equal(lines.length, 1, 'nothing old yet: nothing logged');
    clock += 2 * DAY;
    tick?.();
    assert.equal(lines[1], 'journal: pruned 1 migration(s) and 2 sample(s) older than 1 day(s)');
    stop();
    assert.equal(cancelled, timer);
  });

  it('sets no timer when retention is off', () => {
    let timers = 0;
    keepJournalTrimmed(journal, {
      days: 0,
      log: () => undefined,
      every: () => {
        timers++;
        return {};
      },
    })();
    assert.equal(timers, 0);
  });
});
