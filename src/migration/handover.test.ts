import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PeerError } from '../errors.js';
import { settleHandOver, settleRetryDelayMs } from './handover.js';

/** A destination that answers abort() from a script: an outcome, or an error to throw. */
function destination(script: ('dropped' | 'running' | Error)[]) {
  const calls: string[] = [];
  return {
    calls,
    peer: {
      name: 'host-b',
      abort(id: string): Promise<'dropped' | 'running'> {
        calls.push(id);
        const next = script.shift() ?? new Error('script exhausted');
        return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
      },
    },
  };
}

/** A sleep that returns at once and records how long it was asked to wait. */
function recordingSleep(): { slept: number[]; sleep: (ms: number) => Promise<void> } {
  const slept: number[] = [];
  return {
    slept,
    sleep: (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
  };
}

const unreachable = (): PeerError => new PeerError('cannot reach agent: connect ECONNREFUSED');
const mayHaveArrived = new PeerError('agent did not answer POST /complete within 20000 ms');
const neverArrived = new PeerError('cannot reach agent: connect ECONNREFUSED', { notDelivered: true });

describe('settling a hand-over whose answer was lost', () => {
  it('believes the destination: it runs the guest, or it dropped its copy', async () => {
    for (const answer of ['running', 'dropped'] as const) {
      const d = destination([answer]);
      const { slept, sleep } = recordingSleep();
      const outcome = await settleHandOver({ peer: d.peer, migrationId: 'm1', cause: mayHaveArrived, sleep });
      assert.equal(outcome, answer);
      assert.deepEqual(d.calls, ['m1']);
      assert.deepEqual(slept, []);
    }
  });

  it('resumes without an answer only when the request to start the guest never reached the destination', async () => {
    const d = destination([unreachable()]);
    const outcome = await settleHandOver({
      peer: d.peer,
      migrationId: 'm2',
      cause: neverArrived,
      sleep: () => Promise.reject(new Error('must not wait')),
    });
    assert.equal(outcome, 'not-started');
  });

  it('keeps asking, with back-off and the source paused, while the request may have arrived', async () => {
    const failures = Array.from({ length: 40 }, unreachable);
    const d = destination([...failures, 'running']);
    const { slept, sleep } = recordingSleep();
    const said: string[] = [];
    const outcome = await settleHandOver({
      peer: d.peer,
      migrationId: 'm3',
      cause: mayHaveArrived,
      sleep,
      onWaiting: (m) => said.push(m),
    });
    assert.equal(outcome, 'running');
    assert.equal(d.calls.length, 41);
    assert.deepEqual(slept.slice(0, 6), [1000, 2000, 4000, 8000, 10_000, 10_000]);
    assert.equal(Math.max(...slept), 10_000);
    // Said at the start, then about once a minute of waiting (385 s in all here).
    assert.equal(said.length, 7);
    assert.match(said[0] ?? '', /host-b may run the guest .* stays paused/);
    assert.match(said[1] ?? '', /in doubt for 65 s/);
  });

  it('backs off 1, 2, 4, 8 s, then every 10 s', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 50].map(settleRetryDelayMs),
      [1000, 2000, 4000, 8000, 10_000, 10_000, 10_000],
    );
  });
});
