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

/** A Linux guest heartbeat: memory, disk and network checked. */
function linux(
  seq: number,
  parts: {
    disk?: 'ok' | 'corrupt' | 'error';
    block?: number;
    diskVerified?: number;
    diskPasses?: number;
    net?: 'ok' | 'down';
  } = {},
): GuestHeartbeatEvent {
  const disk = parts.disk ?? 'ok';
  return {
    kind: 'heartbeat',
    seq,
    written: 0,
    verified: seq * 100,
    status: disk === 'corrupt' ? 'corrupt' : 'ok',
    mem: 'ok',
    disk: {
      status: disk,
      written: seq,
      verified: parts.diskVerified ?? seq * 10,
      ...(parts.block !== undefined ? { corruptBlock: parts.block } : {}),
      ...(parts.diskPasses !== undefined ? { passes: parts.diskPasses } : {}),
    },
    net: parts.net ?? 'ok',
  };
}

describe('assessGuestHealth', () => {
  it("reports the newest heartbeat's complete disk passes with the parts", () => {
    const h = assessGuestHealth([
      linux(1, { diskPasses: 4 }),
      linux(2, { diskPasses: 4 }),
      linux(3, { diskPasses: 5 }),
    ]);
    assert.equal(h.state, 'ok');
    assert.deepEqual(h.parts, { mem: 'ok', disk: 'ok', diskPasses: 5, net: 'ok' });
  });

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

  it('says nothing of parts for the freestanding guest', () => {
    const h = assessGuestHealth([hb(1, 10), hb(2, 20), hb(3, 30)]);
    assert.equal(h.parts, undefined);
    assert.equal(h.corruptBlock, undefined);
  });

  it('is ok for a Linux guest with memory, disk and network OK, and says so', () => {
    const h = assessGuestHealth([linux(1), linux(2), linux(3)]);
    assert.equal(h.state, 'ok');
    assert.deepEqual(h.parts, { mem: 'ok', disk: 'ok', net: 'ok' });
    assert.match(h.reason, /verified=300, disk verified=30, net OK/);
  });

  it('is corrupt when the disk is, naming the block', () => {
    const h = assessGuestHealth([linux(1), linux(2, { disk: 'corrupt', block: 17 }), linux(3), linux(4)]);
    assert.equal(h.state, 'corrupt');
    assert.equal(h.corruptBlock, 17);
    assert.equal(h.corruptPage, undefined);
    assert.equal(h.parts?.disk, 'corrupt');
    assert.match(h.reason, /disk block 17 corrupt at heartbeat seq=2/);
  });

  it('is stalled while the network is down, and ok once replies come back', () => {
    const down = assessGuestHealth([linux(1), linux(2), linux(3, { net: 'down' })]);
    assert.equal(down.state, 'stalled');
    assert.equal(down.advancing, 0);
    assert.deepEqual(down.parts, { mem: 'ok', disk: 'ok', net: 'down' });
    assert.match(down.reason, /net DOWN \(no ping reply\) at seq=3/);
    const earlier = assessGuestHealth([linux(1, { net: 'down' }), linux(2), linux(3)]);
    assert.equal(earlier.state, 'stalled');
    assert.equal(earlier.advancing, 2);
    assert.match(earlier.reason, /net DOWN .* at seq=1/);
    const back = assessGuestHealth([linux(1, { net: 'down' }), linux(2), linux(3), linux(4)]);
    assert.equal(back.state, 'ok');
  });

  it('is stalled after a disk I/O error, and when disk verification stops', () => {
    const error = assessGuestHealth([linux(1), linux(2, { disk: 'error' }), linux(3), linux(4)], {
      minOk: 3,
    });
    assert.equal(error.state, 'stalled');
    assert.match(error.reason, /disk ERROR .* at seq=2/);
    const stuck = assessGuestHealth([
      linux(1, { diskVerified: 50 }),
      linux(2, { diskVerified: 50 }),
      linux(3, { diskVerified: 60 }),
    ]);
    assert.equal(stuck.state, 'stalled');
    assert.match(stuck.reason, /disk_verified stayed at 50 from seq=1 to seq=2/);
  });

  it('rejects a bad minOk', () => {
    assert.throws(() => assessGuestHealth([], { minOk: 0 }), /minOk.*got 0/);
  });
});
