import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';
import type { QmpClient } from '../qemu/index.js';
import type { Clock } from './clock.js';
import type { QueryMigrate } from './query-migrate.js';
import { CONVERGING, STUBBORN } from './recorded-samples.fixture.js';
import { SourceMigration, type DestinationPeer } from './source-migration.js';
import type { IncomingReply, MigrationSample, MigrationState } from './types.js';

/** Time that passes only when the driver waits: every wait of the driver's moves it on. */
function fakeClock(): Clock & { waited: number } {
  const clock = {
    waited: 0,
    now: () => clock.waited,
    epochMs: () => 1_764_518_400_000 + clock.waited,
    sleep: (ms: number) => {
      clock.waited += ms;
      return Promise.resolve();
    },
  };
  return clock;
}

/** QEMU's query-migrate answer for a recorded sample. */
function answerFor(s: MigrationSample, downtime?: number): QueryMigrate {
  return {
    status: s.status,
    'expected-downtime': s.expectedDowntimeMs,
    ...(downtime !== undefined ? { downtime } : {}),
    ram: {
      transferred: s.transferredBytes,
      remaining: s.remainingBytes,
      total: s.totalBytes,
      mbps: s.throughputMbps,
      'dirty-sync-count': s.pass,
      'dirty-pages-rate': s.dirtyRateBps / 4096,
      'page-size': 4096,
    },
  };
}

/** The source QEMU, answering from a script: what the driver sent is kept in `sent`. */
function scriptedQemu(answer: (command: string, args: Record<string, unknown> | undefined) => unknown): {
  qmp: QmpClient;
  sent: [string, Record<string, unknown> | undefined][];
} {
  const sent: [string, Record<string, unknown> | undefined][] = [];
  const qmp = {
    connected: true,
    execute: (command: string, args?: Record<string, unknown>) => {
      sent.push([command, args]);
      return Promise.resolve(answer(command, args));
    },
    on: () => () => undefined,
  };
  return { qmp: qmp as unknown as QmpClient, sent };
}

/** The destination agent, agreeing to everything; what it was asked is kept in `asked`. */
function willingPeer(): DestinationPeer & { asked: string[] } {
  const reply: IncomingReply = { uri: 'tcp:198.18.0.2:49152', destinationHost: 'host-b' };
  const asked: string[] = [];
  const ask = <T>(what: string, value: T) => {
    asked.push(what);
    return Promise.resolve(value);
  };
  return {
    name: 'https://198.18.0.2:7700',
    asked,
    prepare: () => ask('prepare', reply),
    resume: () => ask('resume', undefined),
    recover: () => ask('recover', reply),
    complete: () => ask('complete', undefined),
    guestHealth: () => ask('guestHealth', { state: 'ok' as const, reason: '3 OK heartbeats' }),
    abort: (_id, reason) => ask(`abort: ${reason}`, 'dropped' as const),
  };
}

function driver(qmp: QmpClient, peer: DestinationPeer, settings = EXAMPLE_SETTINGS) {
  const states: [MigrationState, string][] = [];
  const samples: MigrationSample[] = [];
  const transports: string[] = [];
  const clock = fakeClock();
  const migration = new SourceMigration({
    id: '0f0e0d0c-1111-2222-3333-444455556666',
    sourceHost: 'host-a',
    request: {
      spec: {
        name: 'vm1',
        memoryMiB: 288,
        vcpus: 1,
        machine: 'pc-i440fx-7.2',
        cpu: 'qemu64',
        boot: { kernel: '/guest.elf' },
        disks: [],
        nics: [],
      },
      settings,
    },
    settings,
    qmp,
    peer,
    openTransport: (reply) => {
      transports.push(`open ${reply.uri ?? ''}`);
      return Promise.resolve({ uri: reply.uri ?? '', close: () => void transports.push('close') });
    },
    recorder: { state: (s, m) => states.push([s, m]), sample: (s) => samples.push(s) },
    clock,
    pollMs: 500,
  });
  return { migration, states, samples, transports, clock };
}

const plain = {
  ...EXAMPLE_SETTINGS,
  tls: false,
  channels: 1,
  downtimeSteps: CONVERGING.settings.downtimeSteps,
};

describe('the source driver on a fake clock, with QEMU answering from recorded runs', () => {
  it('runs a converging migration to its report: QEMU set up, a look every 500 ms, the hand-over', async () => {
    const answers = CONVERGING.samples.map((s, i, all) =>
      answerFor(s, i === all.length - 1 ? 42 : undefined),
    );
    const { qmp, sent } = scriptedQemu((command) =>
      command === 'query-status'
        ? { status: 'running', running: true }
        : command === 'query-migrate'
          ? answers.shift()
          : {},
    );
    const peer = willingPeer();
    const { migration, states, samples, transports } = driver(qmp, peer, plain);
    const report = await migration.run();
    assert.equal(report.status, 'completed', report.error);
    assert.deepEqual(
      sent.map(([c]) => c),
      ['query-status', 'migrate-set-capabilities', 'migrate-set-parameters', 'migrate'].concat(
        ['query-migrate', 'migrate-set-parameters'],
        Array<string>(4).fill('query-migrate'),
      ),
    );
    assert.deepEqual(sent[3]?.[1], { uri: 'tcp:198.18.0.2:49152' });
    assert.equal(sent[2]?.[1]?.['max-bandwidth'], plain.maxBandwidthBytes);
    assert.deepEqual(sent[5]?.[1], { 'downtime-limit': 166 });
    assert.deepEqual(
      samples.map((s) => [s.elapsedMs, s.status]),
      [500, 1000, 1500, 2000, 2500].map((ms, i) => [ms, CONVERGING.samples[i]?.status]),
    );
    assert.deepEqual(peer.asked, ['prepare', 'complete', 'guestHealth']);
    assert.deepEqual(transports, ['open tcp:198.18.0.2:49152', 'close']);
    assert.deepEqual(
      states.map(([s]) => s),
      ['preparing', 'migrating', 'completing'],
    );
    assert.deepEqual(
      [report.to, report.bytes, report.seconds, report.gbps, report.downtimeMs, report.guest],
      ['host-b', 289_233_548, 2.5, 0.926, 42, 'ok'],
    );
  });

  it('cancels a migration that never converges at its completion timeout, and tells the destination to drop it', async () => {
    const answers = STUBBORN.samples.slice(0, -1).map((s) => answerFor(s));
    let cancelled = false;
    const { qmp, sent } = scriptedQemu((command) => {
      if (command === 'migrate_cancel') cancelled = true;
      if (command === 'query-status') return { status: 'running', running: true };
      if (command !== 'query-migrate') return {};
      if (cancelled) return { status: 'cancelled' };
      // Past the recording, QEMU keeps answering as it last did.
      return answers.length > 1 ? answers.shift() : answers[0];
    });
    const peer = willingPeer();
    const settings = { ...plain, completionTimeoutSeconds: 20 };
    const { migration } = driver(qmp, peer, settings);
    const report = await migration.run();
    assert.equal(report.status, 'failed');
    assert.equal(report.error, 'migration aborted: completion timeout of 20 s reached');
    assert.ok(
      report.events.includes('completion timeout of 20 s reached at 20.5 s: abort'),
      report.events.join('\n'),
    );
    assert.equal(sent.filter(([c]) => c === 'migrate_cancel').length, 1);
    assert.deepEqual(peer.asked.at(-1), 'abort: migration aborted: completion timeout of 20 s reached');
    assert.equal(report.guestDetail, 'the source guest kept running');
    assert.equal(report.bytes, STUBBORN.samples.at(-2)?.transferredBytes, 'the last RAM figures QEMU gave');
  });

  it('finishes a post-copy migration whose stream broke: the destination listens again, QEMU resumes', async () => {
    const sample = CONVERGING.samples[0]!;
    // QEMU switches when told, its stream then breaks once, and it completes after resuming.
    const after: Record<string, string> = {
      'postcopy-active': 'postcopy-paused',
      'postcopy-recover': 'completed',
    };
    let status = 'active';
    const { qmp, sent } = scriptedQemu((command, args) => {
      if (command === 'query-status') return { status: 'running', running: true };
      if (command === 'migrate-start-postcopy') status = 'postcopy-active';
      if (command === 'migrate' && args?.resume === true) status = 'postcopy-recover';
      if (command !== 'query-migrate') return {};
      const now = status;
      status = after[now] ?? now;
      return answerFor({ ...sample, status: now });
    });
    const peer = willingPeer();
    const { migration, transports } = driver(qmp, peer, { ...plain, postCopy: true, tunnel: 'multi' });
    migration.forceComplete();
    const report = await migration.run();
    assert.equal(report.status, 'completed', report.error);
    assert.ok(sent.some(([c, a]) => c === 'migrate' && a?.resume === true));
    assert.deepEqual(peer.asked, ['prepare', 'resume', 'recover', 'complete', 'guestHealth']);
    assert.deepEqual(transports, [
      'open tcp:198.18.0.2:49152',
      'close',
      'open tcp:198.18.0.2:49152',
      'close',
    ]);
    assert.ok(
      report.events.some((e) =>
        /post-copy stream broken at .* resumed over a new connection \(recovery 1\)/.test(e),
      ),
      report.events.join('\n'),
    );
    assert.equal(report.postcopySwitchSeconds, 1);
  });
});
