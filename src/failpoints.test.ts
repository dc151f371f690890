import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFailpoints } from './failpoints.js';

describe('test failpoints (VMFERRY_FAILPOINTS)', () => {
  it('reads name=ms and name=hold pairs, and nothing from an unset variable', () => {
    assert.deepEqual([...parseFailpoints(' incoming.complete=2500 ')], [['incoming.complete', 2500]]);
    assert.deepEqual(
      [...parseFailpoints('outgoing.handover=hold,incoming.started=0')],
      [
        ['outgoing.handover', 'hold'],
        ['incoming.started', 0],
      ],
    );
    assert.equal(parseFailpoints(undefined).size, 0);
    assert.equal(parseFailpoints('').size, 0);
  });

  it('names an unknown point or a bad action', () => {
    assert.throws(
      () => parseFailpoints('incoming.complet=5'),
      /unknown point "incoming.complet"; known: outgoing.prepare, incoming.prepared, /,
    );
    assert.throws(() => parseFailpoints('incoming.complete=soon'), /needs a delay in ms or hold .*"soon"/);
    assert.throws(() => parseFailpoints('incoming.complete=-1'), /needs a delay/);
    assert.throws(() => parseFailpoints('incoming.complete'), /needs a delay in ms or hold .*""/);
  });
});
