import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { JournalError } from '../errors.js';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';
import { Journal, openJournal } from './journal.js';
import { JournalBacklog, isDiskError } from './journal-backlog.js';
import { migrationOfError, watchJournalWrites } from './journal-write-errors.js';

/**
 * A real journal whose database can be made full: SQLite's max_page_count at the
 * current size makes every write that grows it fail with SQLITE_FULL, as a full
 * disk does; raising it frees the "disk".
 */
function fullableJournal(path: string): { journal: Journal; fill: () => void; free: () => void } {
  openJournal(path, { now: () => 1 }).close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  let clock = 1000;
  const journal = new Journal(db, path, () => clock++);
  return {
    journal,
    fill: () => void db.pragma(`max_page_count = ${String(db.pragma('page_count', { simple: true }))}`),
    free: () => void db.pragma('max_page_count = 1073741823'),
  };
}

const migration = (id: string) =>
  ({ id, vm: 'web-1', role: 'source', peer: 'host-b', transport: 'native', plan: EXAMPLE_SETTINGS }) as const;

describe('journal writes that wait for the disk', () => {
  let root: string;
  let n = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-backlog-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  function setup() {
    const disk = fullableJournal(join(root, `j${n++}.sqlite`));
    const lines: string[] = [];
    let retry: (() => void) | undefined;
    const backlog = new JournalBacklog(disk.journal, {
      log: (line) => lines.push(line),
      every: (fn) => ((retry = fn), {}),
      cancel: () => (retry = undefined),
    });
    return { ...disk, backlog, lines, retry: () => retry?.(), retrying: () => retry !== undefined };
  }

  it('keeps writes the full disk refuses, in order, and writes them once it has room', () => {
    const t = setup();
    t.backlog.journal.createMigration({ ...migration('m1'), state: 'migrating' });
    t.fill();
    const big = 'x'.repeat(20_000);
    assert.equal(
      t.backlog.later('m1 postcopy', (j) => j.setMigrationState('m1', 'postcopy', { message: big })),
      false,
    );
    assert.equal(
      t.backlog.later('m1 completed', (j) => j.setMigrationState('m1', 'completed', { message: 'done' })),
      false,
    );
    assert.equal(t.backlog.pending, 2);
    assert.ok(t.retrying(), 'retries on a timer');
    assert.match(
      t.lines.join('\n'),
      /cannot write \(m1 postcopy\); keeping it and trying again every second/,
    );
    t.retry();
    assert.equal(t.backlog.pending, 2, 'still full: nothing written');
    assert.equal(t.journal.getMigration('m1')?.state, 'migrating');
    t.free();
    t.retry();
    assert.equal(t.backlog.pending, 0);
    assert.equal(t.retrying(), false, 'the timer stops once the backlog is empty');
    assert.deepEqual(
      t.journal.migrationEvents('m1').map((e) => e.to),
      ['migrating', 'postcopy', 'completed'],
    );
    assert.match(
      t.lines.at(-1) ?? '',
      /writable again; the writes that waited are on disk \(last: m1 completed\)/,
    );
  });

  it('refuses a write that must be on disk while earlier ones wait, naming them; then lets it through', () => {
    const t = setup();
    t.backlog.journal.createMigration(migration('m2'));
    t.fill();
    t.backlog.later('m2 failed', (j) => j.setMigrationState('m2', 'failed', { message: 'x'.repeat(20_000) }));
    assert.throws(
      () => t.backlog.journal.setVmState('web-1', 'running'),
      (err: unknown) =>
        err instanceof JournalError &&
        err.code === 'VMF_ERR_JOURNAL' &&
        err.message.includes('cannot take setVmState now: 1 earlier write(s) wait for the disk (m2 failed)'),
    );
    t.free();
    t.backlog.journal.createMigration(migration('m3'));
    assert.equal(t.backlog.pending, 0, 'the waiting write went first');
    assert.equal(t.journal.getMigration('m2')?.state, 'failed');
  });

  it('turns a refused write that must be on disk into a JournalError naming the file and the cause', () => {
    const t = setup();
    const watched = new JournalBacklog(
      watchJournalWrites(t.journal, () => undefined),
      { log: () => undefined },
    );
    t.fill();
    assert.throws(
      () => watched.journal.createMigration({ ...migration('m4'), message: 'y'.repeat(20_000) }),
      (err: unknown) =>
        err instanceof JournalError &&
        err.file === t.journal.path &&
        /cannot be written \(createMigration\): database or disk is full \(SQLITE_FULL\)/.test(err.message) &&
        migrationOfError(err) === 'm4',
    );
  });

  it('drops, and logs, a waiting write that can never succeed; the ones after it still go', () => {
    const t = setup();
    t.backlog.journal.createMigration({ ...migration('m5'), state: 'completed' });
    t.backlog.journal.createMigration(migration('m6'));
    t.backlog.later('m5 failed', (j) => j.setMigrationState('m5', 'failed'));
    t.backlog.later('m6 completed', (j) => j.setMigrationState('m6', 'completed'));
    assert.equal(t.backlog.pending, 0);
    assert.equal(t.journal.getMigration('m5')?.state, 'completed');
    assert.equal(t.journal.getMigration('m6')?.state, 'completed');
    assert.match(
      t.lines.join('\n'),
      /dropping a write that cannot succeed \(m5 failed\): .*already completed/,
    );
  });

  it('tells disk errors from the others', () => {
    for (const code of [
      'SQLITE_FULL',
      'SQLITE_IOERR_WRITE',
      'SQLITE_BUSY',
      'SQLITE_READONLY',
      'ENOSPC',
      'EIO',
    ])
      assert.equal(isDiskError(Object.assign(new Error('x'), { code })), true, code);
    for (const err of [
      new Error('x'),
      Object.assign(new Error('x'), { code: 'SQLITE_CONSTRAINT' }),
      'SQLITE_FULL',
    ])
      assert.equal(isDiskError(err), false, String(err));
  });
});
