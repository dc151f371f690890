import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DRAIN_MAX_ATTEMPTS,
  attemptEnded,
  attemptStarted,
  drainProgress,
  excludedFor,
  itemsToPlace,
  newDrainJob,
  settleDrain,
  unplaced,
  withItem,
  type DrainJob,
} from './drain.js';

const job = (parallel = 2): DrainJob =>
  newDrainJob({
    id: 'd1',
    host: 'host-a',
    candidates: ['https://b:7700', 'https://c:7700'],
    parallel,
    vms: [
      { name: 'small', memoryMiB: 100 },
      { name: 'big', memoryMiB: 900 },
      { name: 'mid', memoryMiB: 400 },
    ],
    now: 10,
  });

describe('drain decisions', () => {
  it('places the largest pending VMs first, no more than --parallel at once', () => {
    let j = job(2);
    assert.deepEqual(
      itemsToPlace(j).map((i) => i.vm),
      ['big', 'mid'],
    );
    const big = j.items.find((i) => i.vm === 'big');
    assert.ok(big);
    j = withItem(
      j,
      attemptStarted(big, { destination: 'https://b:7700', host: 'host-b', migrationId: 'm1' }),
    );
    assert.deepEqual(
      itemsToPlace(j).map((i) => i.vm),
      ['mid'],
      'one slot left',
    );
  });

  it('retries a failed VM once, on another host, then reports it failed with the reason', () => {
    let item = job().items[0];
    assert.ok(item);
    item = attemptStarted(item, { destination: 'https://b:7700', host: 'host-b', migrationId: 'm1' });
    item = attemptEnded(item, { outcome: 'failed', error: 'QEMU died' });
    assert.equal(item.status, 'pending');
    assert.deepEqual([...excludedFor(item)], ['https://b:7700']);
    item = attemptStarted(item, { destination: 'https://c:7700', host: 'host-c', migrationId: 'm2' });
    item = attemptEnded(item, { outcome: 'failed', error: 'link down' });
    assert.equal(item.status, 'failed');
    assert.equal(item.attempts.length, DRAIN_MAX_ATTEMPTS);
    assert.deepEqual(item.reasons, ['host-c: link down']);
  });

  it("does not count an attempt this agent's restart cut off, nor rule its host out", () => {
    let item = job().items[0];
    assert.ok(item);
    item = attemptStarted(item, { destination: 'https://b:7700', migrationId: 'm1' });
    item = attemptEnded(item, { outcome: 'failed', error: 'the agent restarted', interrupted: true });
    assert.equal(item.status, 'pending');
    assert.deepEqual([...excludedFor(item)], []);
    item = attemptStarted(item, { destination: 'https://b:7700', migrationId: 'm2' });
    item = attemptEnded(item, { outcome: 'failed', error: 'refused' });
    assert.equal(item.status, 'pending', 'still one real try left');
  });

  it('records a migration that could not even start as a failed attempt', () => {
    let item = job().items[0];
    assert.ok(item);
    item = attemptEnded(item, {
      destination: 'https://b:7700',
      outcome: 'failed',
      error: 'pre-flight check failed',
    });
    assert.equal(item.status, 'pending');
    assert.deepEqual(item.attempts, [
      { destination: 'https://b:7700', outcome: 'failed', error: 'pre-flight check failed' },
    ]);
  });

  it('keeps an unplaceable VM waiting while others move, fails it when nothing else is in flight', () => {
    let j = job();
    const [small, big] = j.items;
    assert.ok(small && big);
    j = withItem(j, attemptStarted(big, { destination: 'https://b:7700', migrationId: 'm1' }));
    const waiting = unplaced(j, small, ['b: not enough memory']);
    assert.equal(waiting.status, 'pending');
    const none = unplaced(job(), small, ['b: not enough memory', 'c: in maintenance mode']);
    assert.equal(none.status, 'failed');
    assert.deepEqual(none.reasons, ['b: not enough memory', 'c: in maintenance mode']);
  });

  it('ends once every VM completed or failed, and says whether any failed', () => {
    let j = job();
    for (const item of j.items) {
      j = withItem(
        j,
        attemptEnded(attemptStarted(item, { destination: 'https://b:7700' }), { outcome: 'completed' }),
      );
    }
    j = settleDrain(j, 99);
    assert.equal(j.state, 'completed');
    assert.equal(j.finishedAt, 99);
    assert.equal(drainProgress(j), 'drain of host-a: 3/3 moved, 0 migrating, 0 waiting, 0 failed');
    let k = job();
    k = withItem(k, {
      ...(k.items[0] ?? { vm: '', memoryMiB: 0, attempts: [], reasons: [] }),
      status: 'failed',
    });
    assert.equal(settleDrain(k, 5).state, 'running');
    for (const item of k.items.slice(1)) k = withItem(k, { ...item, status: 'completed' });
    assert.equal(settleDrain(k, 5).state, 'completed-with-failures');
  });

  it('a host with no VM is drained at once', () => {
    const j = newDrainJob({ id: 'd', host: 'h', candidates: [], parallel: 1, vms: [], now: 7 });
    assert.equal(j.state, 'completed');
    assert.equal(j.finishedAt, 7);
  });
});
