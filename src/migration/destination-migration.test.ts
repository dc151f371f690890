import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { orphanVerdict } from './destination-migration.js';

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
