import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';
import type { QmpClient } from '../qemu/index.js';
import type { Clock } from './clock.js';
import type { QueryMigrate } from './query-migrate.js';
import { CONVERGING, STUBBORN } from './recorded-samples.fixture.js';
import { SourceMigration, type DestinationPeer, type SourceMigrationDeps } from './source-migration.js';
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

function driver(
  qmp: QmpClient,
  peer: DestinationPeer,
  settings = EXAMPLE_SETTINGS,
  more: Partial<SourceMigrationDeps> = {},
) {
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
    ...more,
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

/**
 * A source QEMU with one disk mirrored: its mirror job is in step after `readyAfter`
 * looks, ends as block-job-cancel asks (BLOCK_JOB_COMPLETED, or CANCELLED when forced,
 * or with `failAtSwitchOver` an error), and its migration goes through `statuses`.
 */
function blockQemu(o: { readyAfter: number; statuses: string[]; failAtSwitchOver?: boolean }) {
  const handlers = new Map<string, ((e: { event: string; data: Record<string, unknown> }) => void)[]>();
  const sent: [string, Record<string, unknown> | undefined][] = [];
  let job: { device: string; len: number; offset: number; ready: boolean } | undefined;
  let looks = 0;
  let status = 'none';
  const emit = (event: string, data: Record<string, unknown>): void => {
    for (const h of handlers.get(event) ?? []) queueMicrotask(() => h({ event, data }));
  };
  const answer = (command: string, args: Record<string, unknown> | undefined): unknown => {
    switch (command) {
      case 'query-status':
        return { status: 'running', running: true };
      case 'blockdev-mirror':
        job = { device: String(args?.['job-id']), len: 1 << 30, offset: 0, ready: false };
        return {};
      case 'query-block-jobs':
        if (job === undefined) return [];
        looks += 1;
        if (looks >= o.readyAfter) job = { ...job, offset: job.len, ready: true };
        else job = { ...job, offset: job.len / 4 };
        return [{ ...job, status: job.ready ? 'ready' : 'running' }];
      case 'query-named-block-nodes':
        return [{ 'node-name': 'vmf-drive0', 'dirty-bitmaps': [{ count: 65536 }] }];
      case 'block-job-cancel': {
        const { device } = job ?? { device: '' };
        const error = o.failAtSwitchOver === true ? { error: 'Input/output error' } : {};
        emit(args?.force === true ? 'BLOCK_JOB_CANCELLED' : 'BLOCK_JOB_COMPLETED', { device, ...error });
        job = undefined;
        return {};
      }
      case 'migrate':
        status = o.statuses.shift() ?? status;
        return {};
      case 'migrate-continue':
      case 'migrate_cancel':
        status = command === 'migrate_cancel' ? 'cancelled' : (o.statuses.shift() ?? status);
        return {};
      case 'query-migrate': {
        const now = status;
        if (now === 'active') status = o.statuses.shift() ?? status;
        return answerFor({ ...CONVERGING.samples[0]!, status: now });
      }
      default:
        return {};
    }
  };
  const qmp = {
    connected: true,
    execute: (command: string, args?: Record<string, unknown>) => {
      sent.push([command, args]);
      return Promise.resolve(answer(command, args));
    },
    on: (event: string, h: (e: { event: string; data: Record<string, unknown> }) => void) => {
      handlers.set(event, [...(handlers.get(event) ?? []), h]);
      return () =>
        handlers.set(
          event,
          (handlers.get(event) ?? []).filter((x) => x !== h),
        );
    },
  };
  return { qmp: qmp as unknown as QmpClient, sent };
}

/** The driver with one disk to copy over TCP to the destination's NBD server. */
function blockDriver(qmp: QmpClient, peer: DestinationPeer, settings = plain) {
  const closed: string[] = [];
  const d = driver(qmp, peer, settings, {
    disks: {
      disks: [{ disk: 0, nodeName: 'vmf-drive0', exportName: 'disk0', sync: 'full' }],
      speed: 0,
      open: (reply) => {
        assert.deepEqual(reply.disks, { type: 'inet', host: '198.18.0.2', port: 10809 });
        return Promise.resolve({
          target: { type: 'inet', host: '198.18.0.2', port: 10809 },
          close: () => void closed.push('disks'),
        });
      },
    },
  });
  return { ...d, closed };
}

function blockPeer(): ReturnType<typeof willingPeer> {
  const peer = willingPeer();
  return {
    ...peer,
    prepare: async (request) => ({
      ...(await peer.prepare(request)),
      disks: { type: 'inet', host: '198.18.0.2', port: 10809 },
    }),
  };
}

describe('the source driver of a block migration, on a fake clock', () => {
  it('copies the disk until it is in step, then the memory, and completes the copy at the pause before the switch-over', async () => {
    const { qmp, sent } = blockQemu({ readyAfter: 3, statuses: ['active', 'pre-switchover', 'completed'] });
    const peer = blockPeer();
    const { migration, samples, closed } = blockDriver(qmp, peer);
    const report = await migration.run();
    assert.equal(report.status, 'completed', report.error);
    const commands = sent.map(([c]) => c).filter((c) => !c.startsWith('query-'));
    assert.deepEqual(commands, [
      'migrate-set-capabilities',
      'migrate-set-parameters',
      'blockdev-add',
      'blockdev-mirror',
      'migrate',
      'migrate-set-parameters',
      'block-job-cancel',
      'blockdev-del',
      'migrate-continue',
    ]);
    const caps = sent[1]?.[1]?.capabilities as { capability: string; state: boolean }[];
    assert.ok(caps.some((c) => c.capability === 'pause-before-switchover' && c.state));
    assert.equal(
      sent.find(([c]) => c === 'block-job-cancel')?.[1]?.force,
      false,
      'ends the ready mirror, not forced',
    );
    assert.ok(!sent.some(([c]) => c === 'block-job-complete'), 'the source never pivots to the copy');
    assert.deepEqual(samples[0]?.disks?.[0], {
      disk: 0,
      transferredBytes: 1 << 28,
      remainingBytes: 3 << 28,
      totalBytes: 1 << 30,
      dirtyBytes: 65536,
      ready: false,
    });
    assert.deepEqual(report.disks, [{ disk: 0, sync: 'full', bytes: 1 << 30 }]);
    assert.ok(
      report.events.some((e) => /^disks in step after .* \(1024 MiB copied\)$/.test(e)),
      report.events.join('\n'),
    );
    assert.deepEqual(closed, ['disks']);
  });

  it('a failure while the memory moves cancels the copy (forced): the source stays on its disk, the destination drops it', async () => {
    const { qmp, sent } = blockQemu({ readyAfter: 1, statuses: ['active', 'failed'] });
    const peer = blockPeer();
    const { migration, closed } = blockDriver(qmp, peer);
    const report = await migration.run();
    assert.equal(report.status, 'failed');
    assert.match(report.error ?? '', /QEMU reports the migration failed/);
    assert.equal(sent.find(([c]) => c === 'block-job-cancel')?.[1]?.force, true);
    assert.ok(sent.some(([c]) => c === 'blockdev-del'));
    assert.ok(!sent.some(([c]) => c === 'migrate-continue' || c === 'block-job-complete'));
    assert.match(peer.asked.at(-1) ?? '', /^abort: QEMU reports the migration failed/);
    assert.deepEqual(closed, ['disks']);
  });

  it('a copy that does not complete at the switch-over fails the migration there: QEMU is cancelled, not continued', async () => {
    const { qmp, sent } = blockQemu({
      readyAfter: 1,
      statuses: ['active', 'pre-switchover'],
      failAtSwitchOver: true,
    });
    const peer = blockPeer();
    const { migration } = blockDriver(qmp, peer);
    const report = await migration.run();
    assert.equal(report.status, 'failed');
    assert.equal(report.error, 'the copy of disk 0 (Input/output error) did not complete');
    assert.ok(sent.some(([c]) => c === 'migrate_cancel'));
    assert.ok(!sent.some(([c]) => c === 'migrate-continue'));
    assert.match(peer.asked.at(-1) ?? '', /^abort: /);
  });

  it('a disk that never gets in step fails at the completion timeout, before any memory moves', async () => {
    const { qmp, sent } = blockQemu({ readyAfter: Infinity, statuses: ['active'] });
    const peer = blockPeer();
    const { migration } = blockDriver(qmp, peer, { ...plain, completionTimeoutSeconds: 5 });
    const report = await migration.run();
    assert.equal(report.status, 'failed');
    assert.equal(report.error, 'the disks were not in step within the completion timeout of 5 s');
    assert.ok(!sent.some(([c]) => c === 'migrate'));
    assert.equal(sent.find(([c]) => c === 'block-job-cancel')?.[1]?.force, true);
  });
});
