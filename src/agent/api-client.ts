import type { DiskCheckRequest } from '../block/index.js';
import type { GuestHealth } from '../guest/index.js';
import type { Forecast, GuestVerdict, IncomingReply, IncomingRequest } from '../migration/index.js';
import type { MigrationSample, MigrationState } from '../migration/index.js';
import type { CalibrationResult } from '../calibration/index.js';
import type {
  DestinationDiskView,
  HostCapacity,
  MigrationOverrides,
  MigrationPlan,
  MigrationSettings,
  PreflightRequest,
  PreflightResult,
  TransportFigures,
} from '../policy/index.js';
import type { Accelerator, HostCapabilities, HostCpu, VmSpecDraft } from '../qemu/index.js';
import type { AgentClient } from './agent-client.js';
import type { ConsoleChunk, ConsoleTail } from './console-log.js';
import type { MigrationEvent, MigrationRecord } from './journal.js';
import type { DrainJob } from '../maintenance/index.js';
import type { VmView } from './vm-registry.js';

/** The agent API's endpoints, each once: routes.ts serves them, {@link AgentApi} calls them. */
export const API = {
  host: 'GET /v1/host',
  calibrate: 'POST /v1/host/calibrations',
  calibrations: 'GET /v1/host/calibrations',
  plan: 'POST /v1/plan',
  maintenance: 'POST /v1/host/maintenance',
  peers: 'GET /v1/peers',
  startDrain: 'POST /v1/drains',
  drains: 'GET /v1/drains',
  drain: 'GET /v1/drains/:id',
  vms: 'GET /v1/vms',
  startVm: 'POST /v1/vms',
  vm: 'GET /v1/vms/:name',
  vmHealth: 'GET /v1/vms/:name/health',
  vmConsole: 'GET /v1/vms/:name/console',
  stopVm: 'POST /v1/vms/:name/stop',
  migrations: 'GET /v1/migrations',
  startMigration: 'POST /v1/migrations',
  dryRun: 'POST /v1/migrations/dry-run',
  migration: 'GET /v1/migrations/:id',
  samples: 'GET /v1/migrations/:id/samples',
  abortMigration: 'POST /v1/migrations/:id/abort',
  forceComplete: 'POST /v1/migrations/:id/force-complete',
  outgoingState: 'GET /v1/outgoing/:id',
  preflight: 'POST /v1/preflight',
  prepareIncoming: 'POST /v1/incoming',
  checkDisks: 'POST /v1/incoming/disks',
  resumeIncoming: 'POST /v1/incoming/:id/resume',
  recoverIncoming: 'POST /v1/incoming/:id/recover',
  completeIncoming: 'POST /v1/incoming/:id/complete',
  incomingGuest: 'GET /v1/incoming/:id/guest',
  abortIncoming: 'POST /v1/incoming/:id/abort',
  metrics: 'GET /metrics',
} as const;

export type Endpoint = (typeof API)[keyof typeof API];

/** An endpoint's method and path. */
export function routeOf(endpoint: `${'GET' | 'POST'} /${string}`): { method: 'GET' | 'POST'; path: string } {
  const [method, path] = endpoint.split(' ') as ['GET' | 'POST', string];
  return { method, path };
}

/** An endpoint's path with its `:params` filled in (URI-encoded). */
export function pathOf(endpoint: Endpoint, params: Record<string, string> = {}): string {
  return routeOf(endpoint).path.replace(/:([A-Za-z]+)/g, (_m, name: string) =>
    encodeURIComponent(params[name] ?? ''),
  );
}

/** What an agent tells peers and operators about its host (GET /v1/host): its capabilities and more. */
export interface HostSummary extends HostCapabilities {
  name: string;
  accelerator: Accelerator;
  acceleratorReason: string;
  qemuVersion: string;
  migrationCapabilities: string[];
  transports: string[];
  cpus: number;
  /** The machine types its QEMU offers (query-machines). */
  machines: string[];
  /** The CPU models its QEMU knows (query-cpu-definitions). */
  cpuModels: string[];
  /** Its physical CPU, for VMs with cpu "host". */
  hostCpu: HostCpu | undefined;
  /** Memory it can give VMs now, after what its VMs and incoming migrations have not taken yet. */
  capacity: HostCapacity;
  /** In maintenance mode it accepts no incoming migration and no new VM. */
  maintenance: boolean;
  /** Its VMs (running, migrating, arriving). */
  vms: number;
  /** Migrations it sends now, has queued, and receives now. */
  migrations: { running: number; queued: number; incoming: number };
}

/** GET /v1/vms/:name/console: a piece of the guest's console, and the host that runs the VM. */
export interface VmConsole extends ConsoleChunk {
  vm: string;
  host: string;
}

/** What the source sends with the request to start the guest: its console so far, to go on from. */
export interface HandOver {
  consoleTail?: ConsoleTail;
}

/** One peer as this agent sees it now (GET /v1/peers). */
export interface PeerStatus {
  address: string;
  /** Its host summary when it answered. */
  host?: HostSummary;
  /** Why it did not answer (unreachable, refused our certificate, timed out). */
  unreachable?: string;
}

/** POST /v1/drains. */
export interface DrainRequest {
  /** Destinations to use instead of the agent's peers. */
  to?: string[];
  /** At most this many of the drain's migrations at once (default 1). */
  parallel?: number;
  /** Only say where each VM would go, and why. */
  dryRun?: boolean;
}

/** `vmferry host drain --dry-run`: where each VM would go, nothing moved, maintenance untouched. */
export interface DrainPlan {
  host: string;
  candidates: string[];
  placements: {
    vm: string;
    memoryMiB: number;
    destination: string | undefined;
    host: string | undefined;
    reasons: string[];
  }[];
}

/** GET /v1/peers: the agent's own host and its peers ([vmferry] peers). */
export interface PeersView {
  self: HostSummary;
  peers: PeerStatus[];
}

/** POST /v1/migrations and /v1/migrations/dry-run. */
export interface MigrationRequest {
  vm: string;
  /** The destination agent, as the source agent reaches it: https://HOST:PORT. */
  to: string;
  options?: MigrationOverrides;
}

export interface StartedMigration {
  id: string;
  settings: MigrationSettings;
  /** Set when it waits for its turn (max_concurrent_live_migrations): its place in the queue, from 1. */
  queuePosition?: number;
}

/** A migration as its source agent sees it now: its state, latest sample and, while queued, its place. */
export interface LiveProgress {
  state: MigrationState;
  sample: MigrationSample | undefined;
  queuePosition?: number;
}

/** POST /v1/plan: the agent's plan to a peer, and the figures it compared. */
export type AgentPlan = MigrationPlan & { figures: TransportFigures };

/** The destination's answer to POST /v1/preflight. */
export interface PreflightAnswer {
  host: string;
  checks: PreflightResult[];
}

/** `vmferry migrate --dry-run`: the pre-flight checks, the plan and the forecast, nothing started. */
export type DryRun = PlannedDryRun | RefusedDryRun;

/** Every pre-flight check passed: the plan and the forecast. */
export interface PlannedDryRun {
  vm: string;
  to: string;
  /** The destination's pre-flight checks, every one with its result. */
  checks: PreflightResult[];
  refused?: undefined;
  settings: MigrationSettings;
  dirtyRateBps: number;
  dirtyRateSampleSeconds: number;
  throughputBps: number;
  throughputSource: string;
  downtimeLimitMs: number;
  forecast: Forecast;
}

/** A pre-flight check failed: the migration would be refused before anything starts. */
export interface RefusedDryRun {
  vm: string;
  to: string;
  checks: PreflightResult[];
  /** The refusal a real migration would get: every failed check, and hints. */
  refused: { message: string; hint?: string };
}

/** GET /v1/migrations/:id: the journal's record, its events, and while it runs here the driver's view. */
export interface MigrationView extends MigrationRecord {
  events: MigrationEvent[];
  live: LiveProgress | undefined;
}

/**
 * An agent's API, typed: the one place that knows its paths and bodies on the
 * calling side (the CLI, the lab, peers). Timeouts are the ones each call needs.
 */
export class AgentApi {
  constructor(readonly client: AgentClient) {}

  host(options: { timeoutMs?: number } = {}): Promise<HostSummary> {
    return this.client.get(pathOf(API.host), options);
  }

  /** This host and each of its configured peers, as this agent sees them now. */
  peers(): Promise<PeersView> {
    return this.client.get(pathOf(API.peers), { timeoutMs: 20_000 });
  }

  /** Drains this host (or with dryRun, says where each VM would go). */
  startDrain(request: DrainRequest): Promise<DrainJob | DrainPlan> {
    return this.client.post(pathOf(API.startDrain), request, { timeoutMs: 120_000 });
  }

  /** This host's drains, newest first. */
  async drains(): Promise<DrainJob[]> {
    return (await this.client.get<{ drains: DrainJob[] }>(pathOf(API.drains))).drains;
  }

  drain(id: string): Promise<DrainJob> {
    return this.client.get(pathOf(API.drain, { id }));
  }

  /** Puts the host in maintenance mode (no incoming migration, no new VM) or takes it out. */
  setMaintenance(on: boolean): Promise<{ maintenance: boolean }> {
    return this.client.post(pathOf(API.maintenance), { on });
  }

  async vms(options: { timeoutMs?: number } = {}): Promise<VmView[]> {
    return (await this.client.get<{ vms: VmView[] }>(pathOf(API.vms), options)).vms;
  }

  /** Boots a VM; a guest that fills a lot of memory first may need more than the default minute. */
  startVm(
    spec: VmSpecDraft | Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<VmView> {
    return this.client.post(pathOf(API.startVm), spec, { timeoutMs: 60_000, ...options });
  }

  vm(name: string): Promise<VmView> {
    return this.client.get(pathOf(API.vm, { name }));
  }

  /** Waits (up to `waitMs`, at most 2 minutes) for `minOk` good heartbeats after `afterSeq`. */
  vmHealth(
    name: string,
    q: { minOk?: number; waitMs?: number; afterSeq?: number } = {},
  ): Promise<GuestHealth> {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) query.set(k, String(v));
    const path = `${pathOf(API.vmHealth, { name })}${query.size > 0 ? `?${query.toString()}` : ''}`;
    return this.client.get(path, { timeoutMs: (q.waitMs ?? 0) + 10_000 });
  }

  /** A piece of the console: the last `lines`, or what came `after` an offset; `hops` counts forwards between agents. */
  vmConsole(name: string, q: { lines?: number; after?: number; hops?: number } = {}): Promise<VmConsole> {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) query.set(k, String(v));
    return this.client.get(`${pathOf(API.vmConsole, { name })}?${query.toString()}`);
  }

  async stopVm(name: string): Promise<void> {
    await this.client.post(pathOf(API.stopVm, { name }), {}, { timeoutMs: 30_000 });
  }

  async migrations(options: { timeoutMs?: number } = {}): Promise<MigrationRecord[]> {
    return (await this.client.get<{ migrations: MigrationRecord[] }>(pathOf(API.migrations), options))
      .migrations;
  }

  /** `vmferry host calibrate`: trial migrations through each secure transport to `peer` (minutes with a busy host). */
  calibrate(request: { peer: string; memoryMiB?: number; runs?: number }): Promise<CalibrationResult> {
    return this.client.post(pathOf(API.calibrate), request, { timeoutMs: 900_000 });
  }

  async calibrations(peer?: string): Promise<CalibrationResult[]> {
    const query = peer === undefined ? '' : `?${new URLSearchParams({ peer }).toString()}`;
    return (
      await this.client.get<{ calibrations: CalibrationResult[] }>(`${pathOf(API.calibrations)}${query}`)
    ).calibrations;
  }

  /** The plan this agent would make for a live migration of a guest of `memoryMiB` to `to`, with its figures. */
  plan(request: { to: string; memoryMiB: number }): Promise<AgentPlan> {
    return this.client.post(pathOf(API.plan), request, { timeoutMs: 60_000 });
  }

  startMigration(request: MigrationRequest): Promise<StartedMigration> {
    return this.client.post(pathOf(API.startMigration), request, { timeoutMs: 60_000 });
  }

  /** Samples the guest's dirty rate first: takes that long and more. */
  dryRun(request: MigrationRequest): Promise<DryRun> {
    return this.client.post(pathOf(API.dryRun), request, { timeoutMs: 120_000 });
  }

  migration(id: string, options: { timeoutMs?: number } = {}): Promise<MigrationView> {
    return this.client.get(pathOf(API.migration, { id }), options);
  }

  async samples(id: string): Promise<MigrationSample[]> {
    return (await this.client.get<{ samples: MigrationSample[] }>(pathOf(API.samples, { id }))).samples;
  }

  async abortMigration(id: string): Promise<void> {
    await this.client.post(pathOf(API.abortMigration, { id }));
  }

  async forceComplete(id: string): Promise<void> {
    await this.client.post(pathOf(API.forceComplete, { id }));
  }

  /** A source's word on a migration it sends (the destination asks about copies nobody finished). */
  outgoingState(id: string, options: { timeoutMs?: number } = {}): Promise<{ state: MigrationState }> {
    return this.client.get(pathOf(API.outgoingState, { id }), options);
  }

  // The destination's half, called by the source agent that prepared the migration.

  /** The destination's pre-flight checks for receiving a VM (reads the shared disks' first and last MiB). */
  preflight(request: PreflightRequest): Promise<PreflightAnswer> {
    return this.client.post(pathOf(API.preflight), request, { timeoutMs: 30_000 });
  }

  prepareIncoming(request: IncomingRequest): Promise<IncomingReply> {
    return this.client.post(pathOf(API.prepareIncoming), request, { timeoutMs: 60_000 });
  }

  /** Before a block migration: what the destination sees of each disk (it reads image headers: allow a while). */
  async checkDisks(request: DiskCheckRequest): Promise<DestinationDiskView[]> {
    return (
      await this.client.post<{ disks: DestinationDiskView[] }>(pathOf(API.checkDisks), request, {
        timeoutMs: 60_000,
      })
    ).disks;
  }

  async resumeIncoming(id: string, handOver: HandOver = {}): Promise<void> {
    await this.client.post(pathOf(API.resumeIncoming, { id }), handOver);
  }

  recoverIncoming(id: string): Promise<IncomingReply> {
    return this.client.post(pathOf(API.recoverIncoming, { id }), {}, { timeoutMs: 15_000 });
  }

  /** The destination waits up to 10 s for its QEMU to confirm the stream is complete. */
  async completeIncoming(id: string, handOver: HandOver = {}): Promise<void> {
    await this.client.post(pathOf(API.completeIncoming, { id }), handOver, { timeoutMs: 20_000 });
  }

  /** Waits there for the guest's first heartbeats (up to 20 s). */
  incomingGuest(id: string): Promise<GuestVerdict> {
    return this.client.get(pathOf(API.incomingGuest, { id }), { timeoutMs: 60_000 });
  }

  async abortIncoming(id: string, reason: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.client.post(pathOf(API.abortIncoming, { id }), { reason }, { timeoutMs: 15_000, ...options });
  }

  close(): void {
    this.client.close();
  }
}
