import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { interruptedDestinationAction, orphanVerdict } from './destination-migration.js';

describe('incoming copies nobody finishes', () => {
  it('are dropped only when the source ended the migration or never had it', () => {
    const cases: [string, 'drop' | 'keep'][] = [
      ['failed', 'drop'],
      ['cancelled', 'drop'],
      ['unknown-there', 'drop'],
      ['preparing', 'keep'],
      ['migrating', 'keep'],
      ['completing', 'keep'],
      ['postcopy', 'keep'],
      ['completed', 'keep'],
      ['unreachable', 'keep'],
    ];
    for (const [state, verdict] of cases) assert.equal(orphanVerdict(state), verdict, state);
  });
});

describe('an incoming migration nothing drives any more', () => {
  it('keeps a guest that ran here or went into post-copy, waits for the source on a journaled hand-over, drops the rest', () => {
    const paused = (status: string) => ({ running: false, status });
    const cases: [string, { running: boolean; status: string } | undefined, string][] = [
      ['migrating', undefined, 'gone'],
      ['completing', undefined, 'gone'],
      ['preparing', paused('none'), 'drop'],
      ['migrating', paused('active'), 'drop'],
      ['migrating', paused('completed'), 'drop'],
      ['migrating', paused('postcopy-active'), 'postcopy'],
      ['migrating', { running: true, status: 'postcopy-active' }, 'postcopy'],
      ['postcopy', { running: true, status: 'completed' }, 'postcopy'],
      ['completing', paused('completed'), 'await-source'],
      ['completing', { running: true, status: 'completed' }, 'keep'],
      ['migrating', { running: true, status: 'completed' }, 'keep'],
    ];
    for (const [recorded, qemu, action] of cases)
      assert.equal(
        interruptedDestinationAction(recorded, qemu),
        action,
        `${recorded} ${JSON.stringify(qemu)}`,
      );
  });
});
