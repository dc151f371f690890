import type { HostSummary, MigrationRecord, VmView } from '../agent/index.js';
import { isTerminalMigrationState, type MigrationReport, type MigrationSample } from '../migration/index.js';

/** What the dashboard read from one agent in one round (undefined: that call failed). */
export interface AgentReading {
  host: HostSummary | undefined;
  vms: VmView[] | undefined;
  migrations: MigrationRecord[] | undefined;
  /** Live progress of this agent's active outgoing migrations, by id. */
  live: Record<string, { state: string; sample: MigrationSample | undefined }>;
  /** The first failure of the round, if any. */
  error: string | undefined;
}

export interface DashboardVm {
  name: string;
  state: string;
  memoryMiB: number;
  health: string;
  healthReason: string;
  migrationId: string | undefined;
}

export interface DashboardHost {
  /** Position in the dashboard's agent list: what its URLs name the host by. */
  key: number;
  address: string;
  name: string;
  reachable: boolean;
  error: string | undefined;
  accelerator: string | undefined;
  qemuVersion: string | undefined;
  /** In maintenance mode: takes no new VM and no incoming migration. */
  maintenance: boolean;
  vms: DashboardVm[];
}

export interface ActiveMigration {
  hostKey: number;
  id: string;
  vm: string;
  role: 'source' | 'destination';
  from: string;
  to: string;
  state: string;
  /** Not started yet (waiting its turn). */
  queued: boolean;
  /** Share of guest RAM on the destination, 0-100; null before the first sample. */
  percent: number | null;
  throughputGbps: number | null;
  remainingBytes: number | null;
  pass: number | null;
  elapsedSeconds: number;
  /** Only the source agent can abort or force-complete. */
  controllable: boolean;
}

export interface FinishedMigration {
  hostKey: number;
  id: string;
  vm: string;
  from: string;
  to: string;
  state: string;
  finishedAt: number;
  gbps: number | undefined;
  downtimeMs: number | undefined;
  chartUrl: string;
}

export interface DashboardSnapshot {
  time: number;
  hosts: DashboardHost[];
  active: ActiveMigration[];
  finished: FinishedMigration[];
}

const FINISHED_SHOWN = 20;

function percentOf(sample: MigrationSample | undefined): number | null {
  if (sample === undefined || sample.totalBytes <= 0) return null;
  const sent = ((sample.totalBytes - sample.remainingBytes) / sample.totalBytes) * 100;
  return Math.round(Math.max(0, Math.min(100, sent)) * 10) / 10;
}

/**
 * The page's model from one round of readings. A migration both ends know is
 * shown once, from its source (which has the live figures and the controls).
 */
export function dashboardSnapshot(
  now: number,
  readings: readonly { address: string; reading: AgentReading }[],
): DashboardSnapshot {
  const hosts: DashboardHost[] = readings.map(({ address, reading }, key) => ({
    key,
    address,
    name: reading.host?.name ?? address,
    reachable: reading.host !== undefined,
    error: reading.error,
    accelerator: reading.host?.accelerator,
    qemuVersion: reading.host?.qemuVersion,
    maintenance: reading.host?.maintenance === true,
    vms: (reading.vms ?? []).map((vm) => ({
      name: vm.name,
      state: vm.state,
      memoryMiB: vm.memoryMiB,
      // An incoming copy's guest does not run yet: its silence is no verdict.
      health: vm.state === 'incoming' ? 'not yet' : vm.guest.health,
      healthReason:
        vm.state === 'incoming' ? 'the guest runs here once the migration hands over' : vm.guest.reason,
      migrationId: vm.migrationId,
    })),
  }));
  const records = readings.flatMap(({ reading }, hostKey) =>
    (reading.migrations ?? []).map((m) => ({ hostKey, m, reading })),
  );
  const fromSource = new Set(records.filter((r) => r.m.role === 'source').map((r) => r.m.id));
  const shown = records.filter((r) => r.m.role === 'source' || !fromSource.has(r.m.id));
  const hostName = (key: number): string => hosts[key]?.name ?? '?';

  const active: ActiveMigration[] = shown
    .filter((r) => !isTerminalMigrationState(r.m.state))
    .map(({ hostKey, m, reading }) => {
      const live = reading.live[m.id];
      const sample = live?.sample;
      const source = m.role === 'source';
      return {
        hostKey,
        id: m.id,
        vm: m.vm,
        role: m.role,
        from: source ? hostName(hostKey) : m.peer,
        to: source ? m.peer : hostName(hostKey),
        state: live?.state ?? m.state,
        queued: m.state === 'pending',
        percent: percentOf(sample),
        throughputGbps: sample === undefined ? null : sample.throughputMbps / 1000,
        remainingBytes: sample?.remainingBytes ?? null,
        pass: sample?.pass ?? null,
        elapsedSeconds: Math.max(0, (now - m.startedAt) / 1000),
        controllable: source,
      };
    })
    .sort((a, b) => b.elapsedSeconds - a.elapsedSeconds);

  const finished: FinishedMigration[] = shown
    .filter((r) => isTerminalMigrationState(r.m.state))
    .map(({ hostKey, m }) => {
      const report = m.report as Partial<MigrationReport> | null;
      const source = m.role === 'source';
      return {
        hostKey,
        id: m.id,
        vm: m.vm,
        from: report?.from ?? (source ? hostName(hostKey) : m.peer),
        to: report?.to ?? (source ? m.peer : hostName(hostKey)),
        state: m.state,
        finishedAt: m.finishedAt ?? m.updatedAt,
        gbps: report?.gbps,
        downtimeMs: report?.downtimeMs,
        chartUrl: `/charts/${hostKey}/${encodeURIComponent(m.id)}.svg`,
      };
    })
    .sort((a, b) => b.finishedAt - a.finishedAt)
    .slice(0, FINISHED_SHOWN);

  return { time: now, hosts, active, finished };
}
