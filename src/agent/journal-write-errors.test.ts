import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConflictError } from '../errors.js';
import { openJournal } from './journal.js';
import { watchJournalWrites } from './journal-write-errors.js';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';

describe('journal write errors', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-journal-errors-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reports each failed write and still throws it; reads and good writes pass through', () => {
    const errors: unknown[] = [];
    const raw = openJournal(join(root, 'j.sqlite'), { now: () => 1000 });
    const journal = watchJournalWrites(raw, (e) => errors.push(e));
    const input = {
      id: 'm',
      vm: 'v',
      role: 'source',
      peer: 'b',
      transport: 'native',
      plan: EXAMPLE_SETTINGS,
    } as const;
    journal.createMigration(input);
    assert.equal(journal.getMigration('m')?.state, 'pending');
    assert.throws(() => journal.createMigration(input), ConflictError);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof ConflictError);
    journal.close();
    assert.throws(() => journal.setMigrationState('m', 'failed'), /database connection is not open/);
    assert.equal(errors.length, 2, 'a write to a closed database counts');
    assert.throws(() => journal.getMigration('m'), /database connection is not open/);
    assert.equal(errors.length, 2, 'a failed read does not');
  });
});
