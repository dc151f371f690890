import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MigrationReport, MigrationSample } from '../migration/index.js';
import { AgentMetrics, endReason, transportLabel, type LiveMigration } from './agent-metrics.js';
import { parsePrometheusText, sampleValue } from './prometheus-text.js';

const MiB = 1024 * 1024;

function report(over: Partial<MigrationReport>): MigrationReport {
  return {
    id: 'm',
    vm: 'web-1',
    from: 'host-a',
    to: 'host-b',
    status: 'completed',
    transport: 'native',
    tls: true,
    channels: 1,
    postCopy: false,
    autoConverge: false,
    reasons: [],
    bytes: 300 * MiB,
    seconds: 2,
    totalSeconds: 4.5,
    gbps: 1.2,
    downtimeMs: 42,
    iterations: 3,
    maxCpuThrottlePct: 0,
    postcopySwitchSeconds: undefined,
    forcedPauseMs: undefined,
    events: [],
    forecast: undefined,
    guest: 'ok',
    guestDetail: '',
    error: undefined,
    ...over,
  };
}

describe('agent metrics', () => {
  it('counts migrations by transport and outcome, their bytes, durations and downtimes', async () => {
    const metrics = new AgentMetrics(
      { liveMigrations: () => [], guestHealth: () => [] },
      { defaultMetrics: false },
    );
    metrics.migrationStarted('native', true);
    metrics.migrationStarted('tunnelled', true);
    metrics.migrationStarted('tunnelled', true);
    metrics.migrationFinished(report({}));
    metrics.migrationFinished(
      report({
        transport: 'tunnelled',
        status: 'cancelled',
        error: 'migration cancelled: aborted by the operator',
        bytes: 10,
      }),
    );
    metrics.migrationFinished(
      report({
        transport: 'tunnelled',
        status: 'failed',
        error: 'migration aborted: completion timeout of 30 s reached',
        guest: 'unknown',
        bytes: 5,
      }),
    );
    metrics.relayWorkerRestarted();
    metrics.tunnelRefused(403);
    metrics.tunnelRefused(403);
    metrics.journalWriteFailed();
    metrics.unexpectedRejection();
    const f = parsePrometheusText((await metrics.text()).body);
    assert.equal(sampleValue(f, 'vmferry_migrations_started_total', { transport: 'native-tls' }), 1);
    assert.equal(sampleValue(f, 'vmferry_migrations_started_total', { transport: 'tunnelled' }), 2);
    assert.equal(sampleValue(f, 'vmferry_migrations_completed_total', { transport: 'native-tls' }), 1);
    assert.equal(
      sampleValue(f, 'vmferry_migrations_aborted_total', { transport: 'tunnelled', reason: 'operator' }),
      1,
    );
    assert.equal(
      sampleValue(f, 'vmferry_migrations_failed_total', {
        transport: 'tunnelled',
        reason: 'completion_timeout',
      }),
      1,
    );
    assert.equal(
      sampleValue(f, 'vmferry_migration_sent_bytes_total', { transport: 'native-tls' }),
      300 * MiB,
    );
    assert.equal(sampleValue(f, 'vmferry_migration_sent_bytes_total', { transport: 'tunnelled' }), 15);
    assert.equal(sampleValue(f, 'vmferry_migration_downtime_seconds_count', { transport: 'native-tls' }), 1);
    assert.equal(
      sampleValue(f, 'vmferry_migration_downtime_seconds_sum', { transport: 'native-tls' }),
      0.042,
    );
    assert.equal(
      sampleValue(f, 'vmferry_migration_downtime_seconds_bucket', { transport: 'native-tls', le: '0.05' }),
      1,
    );
    assert.equal(
      sampleValue(f, 'vmferry_migration_downtime_seconds_bucket', { transport: 'native-tls', le: '0.025' }),
      0,
    );
    assert.equal(
      sampleValue(f, 'vmferry_migration_downtime_seconds_count', { transport: 'tunnelled' }),
      undefined,
    );
    assert.equal(
      sampleValue(f, 'vmferry_migration_duration_seconds_sum', {
        transport: 'native-tls',
        outcome: 'completed',
      }),
      4.5,
    );
    assert.equal(sampleValue(f, 'vmferry_guest_verdicts_total', { verdict: 'ok' }), 2);
    assert.equal(sampleValue(f, 'vmferry_guest_verdicts_total', { verdict: 'unknown' }), 1);
    assert.equal(sampleValue(f, 'vmferry_relay_worker_restarts_total'), 1);
    assert.equal(sampleValue(f, 'vmferry_tunnel_refusals_total', { status: '403' }), 2);
    assert.equal(sampleValue(f, 'vmferry_journal_write_errors_total'), 1);
    assert.equal(sampleValue(f, 'vmferry_unexpected_rejections_total'), 1);
  });

  it('reads running and queued migrations and their live figures when scraped', async () => {
    let live: LiveMigration[] = [
      {
        id: 'm-1',
        vm: 'web-1',
        state: 'migrating',
        sample: { throughputMbps: 800, remainingBytes: 64 * MiB, dirtyRateBps: 2 * MiB } as MigrationSample,
      },
      { id: 'm-2', vm: 'db-1', state: 'pending', sample: undefined },
    ];
    const metrics = new AgentMetrics(
      { liveMigrations: () => live, guestHealth: () => [{ vm: 'web-1', health: 'ok' }] },
      { defaultMetrics: false },
    );
    let f = parsePrometheusText((await metrics.text()).body);
    assert.equal(sampleValue(f, 'vmferry_migrations_running'), 1);
    assert.equal(sampleValue(f, 'vmferry_migrations_queued'), 1);
    assert.equal(
      sampleValue(f, 'vmferry_migration_throughput_bytes_per_second', { migration: 'm-1', vm: 'web-1' }),
      100e6,
    );
    assert.equal(sampleValue(f, 'vmferry_migration_remaining_bytes', { migration: 'm-1' }), 64 * MiB);
    assert.equal(
      sampleValue(f, 'vmferry_migration_dirty_rate_bytes_per_second', { migration: 'm-1' }),
      2 * MiB,
    );
    assert.equal(sampleValue(f, 'vmferry_migration_remaining_bytes', { migration: 'm-2' }), undefined);
    assert.equal(sampleValue(f, 'vmferry_guest_health', { vm: 'web-1', health: 'ok' }), 1);
    live = [];
    f = parsePrometheusText((await metrics.text()).body);
    assert.equal(sampleValue(f, 'vmferry_migrations_running'), 0);
    assert.equal(
      sampleValue(f, 'vmferry_migration_remaining_bytes', { migration: 'm-1' }),
      undefined,
      'a finished migration leaves no per-migration series behind',
    );
  });

  it('exports the default process metrics with the vmferry_ prefix', async () => {
    const metrics = new AgentMetrics({ liveMigrations: () => [], guestHealth: () => [] });
    const f = parsePrometheusText((await metrics.text()).body);
    assert.ok((sampleValue(f, 'vmferry_process_resident_memory_bytes') ?? 0) > 1024 * 1024);
    assert.equal(f.get('vmferry_process_cpu_seconds_total')?.type, 'counter');
  });

  it('names why a migration ended in a few bounded words', () => {
    const cases: [Partial<MigrationReport>, string][] = [
      [{ error: 'migration cancelled: aborted by the operator' }, 'operator'],
      [{ error: 'migration cancelled: the source agent is shutting down' }, 'shutdown'],
      [{ error: 'migration aborted: completion timeout of 60 s reached' }, 'completion_timeout'],
      [{ error: 'x', events: ['no progress for 30 s at 40.0 s: abort'] }, 'stall'],
      [{ error: 'the destination refused: no space' }, 'destination'],
      [{ error: 'QEMU exited during the migration' }, 'qemu'],
      [{ error: 'something else' }, 'other'],
    ];
    for (const [over, reason] of cases) assert.equal(endReason(report(over)), reason, over.error);
    assert.equal(transportLabel('native', false), 'native');
    assert.equal(transportLabel('native', true), 'native-tls');
    assert.equal(transportLabel('tunnelled', true), 'tunnelled');
  });
});
