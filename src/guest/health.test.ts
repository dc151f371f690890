import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GuestHeartbeatEvent } from './heartbeat-parser.js';
import { assessGuestHealth } from './health.js';

function hb(seq: number, verified: number, written = 0): GuestHeartbeatEvent {
  return { kind: 'heartbeat', seq, written, verified, status: 'ok' };
}

function bad(seq: number, page: number): GuestHeartbeatEvent {
  return { kind: 'heartbeat', seq, written: 0, verified: seq * 10, status: 'corrupt', corruptPage: page };
}

describe('assessGuestHealth', () => {
  it('is ok after three advancing OK heartbeats', () => {
    const h = assessGuestHealth([hb(1, 10), hb(2, 20), hb(3, 30)]);
    assert.equal(h.state, 'ok');
    assert.equal(h.advancing, 3);
    assert.equal(h.lastSeq, 3);
  });

  it('tolerates gaps in seq (lines lost at a switch-over)', () => {
    assert.equal(assessGuestHealth([hb(5, 10), hb(8, 40), hb(9, 50)]).state, 'ok');
  });

  it('is stalled with too few heartbeats or none', () => {
    const few = assessGuestHealth([hb(1, 10), hb(2, 20)]);
    assert.equal(few.state, 'stalled');
    assert.match(few.reason, /2 advancing.*need 3/);
    const none = assessGuestHealth([], { afterSeq: 7 });
    assert.equal(none.state, 'stalled');
    assert.match(none.reason, /no heartbeat after seq=7/);
  });

  it('is stalled when verified stops advancing', () => {
    const h = assessGuestHealth([hb(1, 10), hb(2, 20), hb(3, 20), hb(4, 20)]);
    assert.equal(h.state, 'stalled');
    assert.match(h.reason, /verified stayed at 20/);
  });

  it('is stalled when seq goes back (guest rebooted)', () => {
    const h = assessGuestHealth([hb(7, 70), hb(8, 80), hb(1, 90), hb(2, 100)]);
    assert.equal(h.state, 'stalled');
    assert.match(h.reason, /seq went from 8 to 1/);
  });

  it('checks writes only when asked', () => {
    const idle = [hb(1, 10, 5), hb(2, 20, 5), hb(3, 30, 5)];
    assert.equal(assessGuestHealth(idle).state, 'ok');
    assert.equal(assessGuestHealth(idle, { requireWrites: true }).state, 'stalled');
  });

  it('judges only heartbeats after afterSeq', () => {
    const beats = [hb(1, 10), hb(2, 20), hb(3, 30), hb(4, 40)];
    assert.equal(assessGuestHealth(beats, { afterSeq: 2 }).state, 'stalled');
    assert.equal(assessGuestHealth(beats, { afterSeq: 2, minOk: 2 }).state, 'ok');
  });

  it('never forgets a corruption, even followed by OK-looking beats', () => {
    const h = assessGuestHealth([hb(1, 10), bad(2, 42), hb(3, 30), hb(4, 40), hb(5, 50)]);
    assert.equal(h.state, 'corrupt');
    assert.equal(h.corruptPage, 42);
    assert.match(h.reason, /page 42.*seq=2/);
  });

  it('rejects a bad minOk', () => {
    assert.throws(() => assessGuestHealth([], { minOk: 0 }), /minOk.*got 0/);
  });
});
