import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SendQueue, busyRetryDelayMs, type QueuedItem } from './send-queue.js';

const item = (id: string, extra: Partial<QueuedItem> = {}): QueuedItem => ({ id, vm: `vm-${id}`, ...extra });

describe('SendQueue', () => {
  it('lets migrations start first in, first out, up to the limit', () => {
    const q = new SendQueue<QueuedItem>();
    for (const id of ['m1', 'm2', 'm3']) q.add(item(id));
    assert.deepEqual(q.position('m3'), 3);
    assert.deepEqual(
      q.takeReady(0, 2, 0).map((i) => i.id),
      ['m1', 'm2'],
    );
    assert.equal(q.position('m3'), 1, 'm3 moved up');
    assert.deepEqual(q.takeReady(2, 2, 0), [], 'no slot while two run');
    assert.deepEqual(
      q.takeReady(1, 2, 0).map((i) => i.id),
      ['m3'],
    );
    assert.equal(q.length, 0);
  });

  it('limit 0 means unlimited (nova)', () => {
    const q = new SendQueue<QueuedItem>();
    for (const id of ['a', 'b', 'c', 'd']) q.add(item(id));
    assert.equal(q.takeReady(7, 0, 0).length, 4);
  });

  it('passes over a migration whose destination is busy until its time, without losing its place', () => {
    const q = new SendQueue<QueuedItem>();
    q.add(item('busy', { notBefore: 5000, busyRetries: 1 }));
    q.add(item('next'));
    assert.deepEqual(
      q.takeReady(0, 1, 1000).map((i) => i.id),
      ['next'],
    );
    assert.equal(q.position('busy'), 1);
    assert.equal(q.nextWakeUp(1000), 5000);
    assert.deepEqual(q.takeReady(0, 1, 4999), []);
    assert.deepEqual(
      q.takeReady(0, 1, 5000).map((i) => i.id),
      ['busy'],
    );
  });

  it('puts a busy retry back at the front, and never holds one migration twice', () => {
    const q = new SendQueue<QueuedItem>();
    q.add(item('b'));
    q.add(item('a'), { front: true });
    q.add(item('a'));
    assert.deepEqual(
      q.list().map((i) => i.id),
      ['a', 'b'],
    );
    assert.equal(q.remove('a')?.id, 'a');
    assert.equal(q.remove('a'), undefined);
  });

  it('backs off 2, 4, 8, 16 then 30 s from a busy destination', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 9].map(busyRetryDelayMs), [2000, 4000, 8000, 16000, 30000, 30000]);
  });
});
