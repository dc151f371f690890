import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initialMonitorState, nextAction, type MonitorAction, type MonitorState } from './next-action.js';
import { CONVERGING, STUBBORN } from './recorded-samples.fixture.js';
import type { MigrationSample } from './types.js';

type Settings = MonitorState['settings'];

/**
 * Feeds recorded samples to nextAction in order, as the driver does, and lists
 * what it asked for (waits left out) with the second it happened at, up to the
 * first action that ends pre-copy. `before` may change the state before a look
 * (what the operator's abort and force-complete do).
 */
function replay(
  settings: Settings,
  samples: readonly MigrationSample[],
  before?: (state: MonitorState, index: number) => MonitorState,
): [string, MonitorAction][] {
  let state = initialMonitorState(settings);
  const done: [string, MonitorAction][] = [];
  for (const [i, sample] of samples.entries()) {
    if (before !== undefined) state = before(state, i);
    const next = nextAction(state, sample);
    state = next.state;
    if (next.action.kind !== 'wait') done.push([(sample.elapsedMs / 1000).toFixed(1), next.action]);
    if (['completed', 'qemu-failed', 'cancelled', 'postcopy'].includes(next.action.kind)) break;
  }
  return done;
}

const downtime = (at: string, downtimeMs: number): [string, MonitorAction] => [
  at,
  { kind: 'set-downtime', downtimeMs },
];

describe('nextAction on recorded migrations', () => {
  it('a converging migration: the first downtime step once its delay has passed, then completed', () => {
    assert.deepEqual(replay(CONVERGING.settings, CONVERGING.samples), [
      downtime('0.5', 166),
      ['2.5', { kind: 'completed' }],
    ]);
  });

  it('a migration that never converges: each downtime step when due, then the completion timeout cancels it, as recorded', () => {
    assert.deepEqual(replay(STUBBORN.settings, STUBBORN.samples), [
      downtime('0.5', 166),
      downtime('6.1', 277),
      downtime('12.3', 388),
      downtime('18.3', 500),
      ['20.3', { kind: 'cancel', event: 'completion timeout of 20 s reached at 20.3 s: abort' }],
      ['20.4', { kind: 'cancelled', message: 'migration aborted: completion timeout of 20 s reached' }],
    ]);
  });

  it('force_complete at the timeout: switches to post-copy when it is allowed, else pauses the guest, once', () => {
    const forced = { ...STUBBORN.settings, timeoutAction: 'force_complete' } as const;
    const switched = replay({ ...forced, postCopy: true }, STUBBORN.samples).find(
      ([, a]) => a.kind === 'start-postcopy',
    );
    assert.deepEqual(switched, [
      '20.3',
      { kind: 'start-postcopy', event: 'completion timeout of 20 s reached at 20.3 s: postcopy' },
    ]);
    const paused = replay(forced, STUBBORN.samples.slice(0, -1)).filter(([, a]) => a.kind !== 'set-downtime');
    assert.deepEqual(paused, [
      ['20.3', { kind: 'pause', event: 'completion timeout of 20 s reached at 20.3 s: pause' }],
    ]);
  });

  it('stall detection: no fall below the lowest remaining memory for stallSeconds acts like the timeout', () => {
    // The lowest remaining figure of the run is 56 377 344 bytes at 2.0 s; it never falls below it again.
    const stalled = replay(
      { ...STUBBORN.settings, completionTimeoutSeconds: 0, stallSeconds: 5 },
      STUBBORN.samples,
    );
    assert.deepEqual(
      stalled.find(([, a]) => a.kind === 'cancel'),
      ['7.2', { kind: 'cancel', event: 'no progress for 5 s at 7.2 s: abort' }],
    );
    const without = replay(
      { ...STUBBORN.settings, completionTimeoutSeconds: 0, stallSeconds: 0 },
      STUBBORN.samples.slice(0, -1),
    );
    assert.ok(
      without.every(([, a]) => a.kind === 'set-downtime'),
      JSON.stringify(without),
    );
  });

  it("the operator's abort: announced once, QEMU asked again until it cancels, cancelled when it has", () => {
    const aborted = replay(STUBBORN.settings, STUBBORN.samples, (state, i) =>
      i === 10 ? { ...state, abort: { reason: 'aborted by the operator', byOperator: true } } : state,
    );
    const cancels = aborted.filter(([, a]) => a.kind === 'cancel');
    assert.deepEqual(cancels[0], ['5.6', { kind: 'cancel', event: 'abort requested at 5.6 s' }]);
    assert.ok(cancels.slice(1).every(([, a]) => a.kind === 'cancel' && a.event === undefined));
    assert.deepEqual(aborted.at(-1), [
      '20.4',
      { kind: 'cancelled', message: 'migration cancelled: aborted by the operator' },
    ]);
    const cancelling: MigrationSample = { ...STUBBORN.samples[11]!, status: 'cancelling' };
    const state = { ...initialMonitorState(STUBBORN.settings), abort: { reason: 'x', byOperator: true } };
    assert.deepEqual(nextAction(state, cancelling).action, { kind: 'wait' });
  });

  it("the operator's force-complete acts at the next look, whatever the timeout", () => {
    const forced = replay({ ...STUBBORN.settings, postCopy: true }, STUBBORN.samples, (state, i) =>
      i === 3 ? { ...state, forceRequested: true } : state,
    );
    assert.deepEqual(
      forced.find(([, a]) => a.kind === 'start-postcopy'),
      [
        '2.0',
        { kind: 'start-postcopy', event: 'force-complete requested by the operator at 2.0 s: postcopy' },
      ],
    );
  });

  it('hands over to the post-copy phase once QEMU switched, and reports a failure QEMU reports', () => {
    const state = initialMonitorState(STUBBORN.settings);
    const sample = STUBBORN.samples[5]!;
    for (const status of ['postcopy-active', 'postcopy-paused', 'postcopy-recover'])
      assert.deepEqual(nextAction(state, { ...sample, status }).action, { kind: 'postcopy' }, status);
    assert.deepEqual(nextAction(state, { ...sample, status: 'failed' }).action, { kind: 'qemu-failed' });
  });

  it('a block migration paused before the switch-over completes its disk copies, unless it is being cancelled', () => {
    const state = initialMonitorState(STUBBORN.settings);
    const paused: MigrationSample = { ...STUBBORN.samples[5]!, status: 'pre-switchover' };
    assert.deepEqual(nextAction(state, paused).action, { kind: 'switch-over' });
    const aborting = { ...state, abort: { reason: 'operator', byOperator: true } };
    assert.equal(nextAction(aborting, paused).action.kind, 'cancel');
  });
});

describe('nextAction with mirrored disks (block migration)', () => {
  const MiB = 1024 ** 2;
  const settings: Settings = {
    ...STUBBORN.settings,
    completionTimeoutSeconds: 0,
    stallSeconds: 150,
    diskStallSeconds: 5,
  };
  /** Looks every 0.5 s for 20 s; memory moves until `memoryUntil`, the disk copy until `diskUntil` (seconds). */
  function samples(memoryUntil: number, diskUntil: number, disks = true): MigrationSample[] {
    return Array.from({ length: 41 }, (_, i) => {
      const t = i / 2;
      return {
        ...STUBBORN.samples[5]!,
        status: 'active',
        elapsedMs: t * 1000,
        transferredBytes: Math.min(t, memoryUntil) * 4 * MiB,
        remainingBytes: 50 * MiB,
        ...(disks
          ? {
              disks: [
                {
                  disk: 0,
                  transferredBytes: (100 + Math.min(t, diskUntil)) * MiB,
                  remainingBytes: 0,
                  totalBytes: 200 * MiB,
                  dirtyBytes: 0,
                  ready: true,
                },
              ],
            }
          : {}),
      };
    });
  }
  const cancels = (list: MigrationSample[], s: Settings = settings): [string, MonitorAction][] =>
    replay(s, list).filter(([, a]) => a.kind !== 'set-downtime');

  it('cancels once neither the memory nor the disk copy moved for diskStallSeconds, and says why when QEMU cancelled', () => {
    const list = samples(6, 3);
    const reason = 'neither the memory nor the disk copy moved for 5 s while the disks are mirrored';
    const [first, ...again] = cancels(list);
    assert.deepEqual(first, [
      '11.5',
      { kind: 'cancel', event: `${reason} at 11.5 s: abort (guest writes wait on the mirrors)` },
    ]);
    // QEMU is asked again on every look until it cancels, announced once.
    assert.equal(again.length, 17);
    for (const [, action] of again) assert.deepEqual(action, { kind: 'cancel', event: undefined });
    let state = initialMonitorState(settings);
    for (const sample of list.slice(0, 24)) state = nextAction(state, sample).state;
    assert.deepEqual(nextAction(state, { ...list[24]!, status: 'cancelling' }).action, { kind: 'wait' });
    assert.deepEqual(nextAction(state, { ...list[24]!, status: 'cancelled' }).action, {
      kind: 'cancelled',
      message: `migration aborted: ${reason}`,
    });
  });

  it('either stream moving is progress: a disk copy going on while the memory waits does not cancel', () => {
    assert.deepEqual(cancels(samples(2, 20)), []);
    assert.deepEqual(cancels(samples(20, 0)), []);
  });

  it('does nothing with diskStallSeconds 0, and nothing without disks (a live migration)', () => {
    assert.deepEqual(cancels(samples(6, 3), { ...settings, diskStallSeconds: 0 }), []);
    assert.deepEqual(cancels(samples(6, 3, false)), []);
  });
});
