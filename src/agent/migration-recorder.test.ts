import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { JournalError } from '../errors.js';
import { MIGRATION_STATES, type MigrationState } from '../migration/index.js';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';
import { Journal, openJournal } from './journal.js';
import { JournalBacklog } from './journal-backlog.js';
import { journalRecorder, whenToJournal } from './migration-recorder.js';

describe('when a source migration journals a state change', () => {
  it('must journal before the hand-over and pre-copy states; may wait once the guest may run on the destination', () => {
    const cases: [MigrationState, MigrationState, 'now' | 'later'][] = [
      ['preparing', 'preparing', 'now'],
      ['preparing', 'migrating', 'now'],
      ['migrating', 'migrating', 'now'],
      ['migrating', 'completing', 'now'],
      ['completing', 'completing', 'later'],
      ['migrating', 'postcopy', 'later'],
      ['postcopy', 'postcopy', 'later'],
      ['postcopy', 'completing', 'later'],
    ];
    for (const [reached, next, when] of cases)
      assert.equal(whenToJournal(reached, next), when, `${reached} -> ${next}`);
    for (const reached of MIGRATION_STATES)
      for (const end of ['completed', 'failed', 'cancelled'] as const)
        assert.equal(whenToJournal(reached, end), 'later', `${reached} -> ${end}`);
  });

  describe('the recorder on a full journal', () => {
    let root: string;
    before(async () => {
      root = await mkdtemp(join(tmpdir(), 'vmferry-recorder-'));
    });
    after(async () => {
      await rm(root, { recursive: true, force: true });
    });

    it('fails the hand-over when it cannot be journaled, but never a post-copy state or a sample', () => {
      const path = join(root, 'j.sqlite');
      openJournal(path, { now: () => 1 }).close();
      const db = new Database(path);
      const journal = new Journal(db, path, () => 5);
      const backlog = new JournalBacklog(journal, { log: () => undefined, every: () => ({}) });
      const lines: string[] = [];
      for (const id of ['pre', 'post'])
        journal.createMigration({
          id,
          vm: id,
          role: 'source',
          peer: 'host-b',
          transport: 'native',
          plan: EXAMPLE_SETTINGS,
          state: 'migrating',
        });
      const pre = journalRecorder({
        id: 'pre',
        journal: backlog.journal,
        backlog,
        log: (l) => lines.push(l),
        reached: 'migrating',
      });
      const post = journalRecorder({
        id: 'post',
        journal: backlog.journal,
        backlog,
        log: (l) => lines.push(l),
        reached: 'migrating',
      });
      db.pragma(`max_page_count = ${String(db.pragma('page_count', { simple: true }))}`);
      const long = 'z'.repeat(20_000);
      assert.throws(() => pre.state('completing', long), /database or disk is full/);
      post.state('postcopy', long);
      assert.equal(backlog.pending, 1, 'the post-copy state waits');
      assert.throws(
        () => pre.state('migrating', 'again'),
        JournalError,
        'pre-copy writes fail while the disk is full',
      );
      post.sample({
        time: 1,
        elapsedMs: 1,
        status: 'postcopy-active',
        transferredBytes: 1,
        remainingBytes: 1,
        totalBytes: 2,
        dirtyRateBps: 0,
        throughputMbps: 0,
        pass: 2,
        expectedDowntimeMs: 0,
        cpuThrottlePct: 0,
        downtimeLimitMs: undefined,
      });
      assert.match(lines.join('\n'), /migration post: samples are not journaled for now/);
      db.pragma('max_page_count = 1073741823');
      post.state('completing', 'settling');
      assert.equal(backlog.pending, 0);
      assert.deepEqual(
        journal.migrationEvents('post').map((e) => e.to),
        ['migrating', 'postcopy', 'completing'],
      );
      assert.equal(journal.getMigration('pre')?.state, 'migrating');
    });
  });
});
