import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wentThroughPostcopy } from './query-migrate.js';
import { interruptedSourceAction } from './source-recovery.js';

describe('a source migration nothing drives any more, journaled before its hand-over', () => {
  it('is called off unless QEMU says post-copy started: the journal may lag behind QEMU', () => {
    assert.equal(interruptedSourceAction(undefined), 'call-off', 'QEMU gone');
    for (const status of ['none', 'setup', 'active', 'cancelled', 'failed'])
      assert.equal(interruptedSourceAction({ status, ram: { transferred: 5 } }), 'call-off', status);
    assert.equal(
      interruptedSourceAction({ status: 'completed', ram: { 'postcopy-bytes': 0, 'postcopy-requests': 0 } }),
      'call-off',
      'a pre-copy that completed: the destination was never told to start the guest',
    );
    for (const status of ['postcopy-active', 'postcopy-paused', 'postcopy-recover'])
      assert.equal(interruptedSourceAction({ status }), 'finish-postcopy', status);
    assert.equal(interruptedSourceAction({ status: 'completed', ram: { 'postcopy-bytes': 4096 } }), 'settle');
    assert.equal(interruptedSourceAction({ status: 'completed', ram: { 'postcopy-requests': 3 } }), 'settle');
  });

  it('went through post-copy when QEMU is in it, or sent pages after the switch', () => {
    assert.equal(wentThroughPostcopy({ status: 'postcopy-paused' }), true);
    assert.equal(wentThroughPostcopy({ status: 'completed', ram: { 'postcopy-bytes': 1 } }), true);
    assert.equal(wentThroughPostcopy({ status: 'completed', ram: {} }), false);
    assert.equal(wentThroughPostcopy({}), false);
  });
});
