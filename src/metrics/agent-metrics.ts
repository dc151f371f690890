/**
 * The agent's Prometheus metrics (prom-client, its own registry). Counters and
 * histograms only carry bounded labels (transport, outcome reason, verdict);
 * the per-migration gauges name running migrations and disappear when they end.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { MigrationReport, MigrationSample } from '../migration/index.js';

/** `native`, `native-tls` or `tunnelled` (always encrypted), as the benchmark names them. */
export function transportLabel(transport: string, tls: boolean): string {
  return transport === 'native' && tls ? 'native-tls' : transport;
}

export const END_REASONS = [
  'operator',
  'shutdown',
  'completion_timeout',
  'stall',
  'destination',
  'qemu',
  'restart',
  'other',
] as const;
export type EndReason = (typeof END_REASONS)[number];

/** Why a migration did not complete, from its report, in a few bounded words. */
export function endReason(report: Pick<MigrationReport, 'error' | 'events'>): EndReason {
  const text = [report.error ?? '', ...report.events].join('\n');
  if (/shutting down/.test(text)) return 'shutdown';
  if (/restarted/.test(text)) return 'restart';
  if (/aborted by the operator|cancelled by the operator/.test(text)) return 'operator';
  if (/completion timeout/.test(text)) return 'completion_timeout';
  if (/no progress for/.test(text)) return 'stall';
  if (/destination|agent .* (did not answer|answered)|cannot reach agent/i.test(text)) return 'destination';
  if (/QEMU|qemu/.test(text)) return 'qemu';
  return 'other';
}

export interface LiveMigration {
  id: string;
  vm: string;
  state: string;
  sample: MigrationSample | undefined;
}

/** What the gauges read when Prometheus scrapes. */
export interface MetricsSources {
  liveMigrations: () => LiveMigration[];
  /** Each VM's current guest health (ok, corrupt, stalled, unknown...). */
  guestHealth: () => { vm: string; health: string }[];
}

const DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600];
const DOWNTIME_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly registers = [this.registry];
  private readonly started = new Counter({
    name: 'vmferry_migrations_started_total',
    help: 'Outgoing migrations started, by transport.',
    labelNames: ['transport'],
    registers: this.registers,
  });
  private readonly completed = new Counter({
    name: 'vmferry_migrations_completed_total',
    help: 'Outgoing migrations that completed (the guest runs on the destination), by transport.',
    labelNames: ['transport'],
    registers: this.registers,
  });
  private readonly failed = new Counter({
    name: 'vmferry_migrations_failed_total',
    help: 'Outgoing migrations that failed (the guest stays on the source), by transport and reason.',
    labelNames: ['transport', 'reason'],
    registers: this.registers,
  });
  private readonly aborted = new Counter({
    name: 'vmferry_migrations_aborted_total',
    help: 'Outgoing migrations cancelled on request (operator, agent shutdown), by transport and reason.',
    labelNames: ['transport', 'reason'],
    registers: this.registers,
  });
  private readonly bytesSent = new Counter({
    name: 'vmferry_migration_sent_bytes_total',
    help: 'Guest RAM bytes QEMU sent in finished outgoing migrations, by transport.',
    labelNames: ['transport'],
    registers: this.registers,
  });
  private readonly duration = new Histogram({
    name: 'vmferry_migration_duration_seconds',
    help: 'Wall time of finished outgoing migrations, from the request to the end, by transport and outcome.',
    labelNames: ['transport', 'outcome'],
    buckets: DURATION_BUCKETS,
    registers: this.registers,
  });
  private readonly downtime = new Histogram({
    name: 'vmferry_migration_downtime_seconds',
    help: 'Guest downtime of completed migrations as QEMU measured it, by transport.',
    labelNames: ['transport'],
    buckets: DOWNTIME_BUCKETS,
    registers: this.registers,
  });
  private readonly verdicts = new Counter({
    name: 'vmferry_guest_verdicts_total',
    help: "The guest's own verdict after each finished migration (ok, corrupt, stalled, unknown).",
    labelNames: ['verdict'],
    registers: this.registers,
  });
  private readonly workerRestarts = new Counter({
    name: 'vmferry_relay_worker_restarts_total',
    help: 'TLS and tunnel relay worker processes that exited and were replaced.',
    registers: this.registers,
  });
  private readonly tunnelRefusals = new Counter({
    name: 'vmferry_tunnel_refusals_total',
    help: 'Tunnel connections refused (bad token, wrong peer, unknown migration), by HTTP status.',
    labelNames: ['status'],
    registers: this.registers,
  });
  private readonly journalWriteErrors = new Counter({
    name: 'vmferry_journal_write_errors_total',
    help: "Writes to the agent's journal that failed.",
    registers: this.registers,
  });
  private readonly unexpectedRejections = new Counter({
    name: 'vmferry_unexpected_rejections_total',
    help: 'Promise rejections nothing handled (bugs): logged, the agent kept serving, their migration recovered.',
    registers: this.registers,
  });

  constructor(sources: MetricsSources, options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false)
      collectDefaultMetrics({ register: this.registry, prefix: 'vmferry_' });
    this.addMigrationGauges(sources);
    new Gauge({
      name: 'vmferry_guest_health',
      help: "1 for each VM's current guest health verdict (from its heartbeats).",
      labelNames: ['vm', 'health'],
      registers: this.registers,
      collect() {
        this.reset();
        for (const g of sources.guestHealth()) this.set({ vm: g.vm, health: g.health }, 1);
      },
    });
  }

  /** Gauges read from the running migrations when Prometheus scrapes. */
  private addMigrationGauges(sources: MetricsSources): void {
    const registers = this.registers;
    new Gauge({
      name: 'vmferry_migrations_running',
      help: 'Outgoing migrations under way.',
      registers,
      collect() {
        this.set(sources.liveMigrations().filter((m) => m.state !== 'pending').length);
      },
    });
    new Gauge({
      name: 'vmferry_migrations_queued',
      help: 'Outgoing migrations waiting to start.',
      registers,
      collect() {
        this.set(sources.liveMigrations().filter((m) => m.state === 'pending').length);
      },
    });
    const perMigration = (name: string, help: string, value: (s: MigrationSample) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['migration', 'vm'],
        registers,
        collect() {
          this.reset();
          for (const m of sources.liveMigrations())
            if (m.sample !== undefined) this.set({ migration: m.id, vm: m.vm }, value(m.sample));
        },
      });
    };
    perMigration(
      'vmferry_migration_throughput_bytes_per_second',
      'Current throughput of each running outgoing migration.',
      (s) => (s.throughputMbps * 1e6) / 8,
    );
    perMigration(
      'vmferry_migration_remaining_bytes',
      'Guest RAM still to send, per running outgoing migration.',
      (s) => s.remainingBytes,
    );
    perMigration(
      'vmferry_migration_dirty_rate_bytes_per_second',
      'How fast the guest dirties its memory, per running outgoing migration.',
      (s) => s.dirtyRateBps,
    );
  }

  migrationStarted(transport: string, tls: boolean): void {
    this.started.inc({ transport: transportLabel(transport, tls) });
  }

  migrationFinished(report: MigrationReport): void {
    const transport = transportLabel(report.transport, report.tls);
    if (report.status === 'completed') this.completed.inc({ transport });
    else if (report.status === 'cancelled') this.aborted.inc({ transport, reason: endReason(report) });
    else this.failed.inc({ transport, reason: endReason(report) });
    this.bytesSent.inc({ transport }, report.bytes);
    this.duration.observe({ transport, outcome: report.status }, report.totalSeconds);
    if (report.status === 'completed' && report.downtimeMs !== undefined)
      this.downtime.observe({ transport }, report.downtimeMs / 1000);
    this.verdicts.inc({ verdict: report.guest });
  }

  relayWorkerRestarted(): void {
    this.workerRestarts.inc();
  }

  tunnelRefused(status: number): void {
    this.tunnelRefusals.inc({ status: String(status) });
  }

  journalWriteFailed(): void {
    this.journalWriteErrors.inc();
  }

  unexpectedRejection(): void {
    this.unexpectedRejections.inc();
  }

  /** The Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
