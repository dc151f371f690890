import { randomUUID } from 'node:crypto';
import { rm, rmdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  AuthError,
  ConflictError,
  MigrationError,
  NotFoundError,
  PeerError,
  UsageError,
  describeError,
} from '../errors.js';
import {
  SourceMigration,
  closeTransport,
  forecastPrecopy,
  interruptedSourceAction,
  restoreSourceGuest,
  finishPostcopy,
  settleHandOver,
  systemClock,
  type DestinationPeer,
  type IncomingReply,
  type IncomingRequest,
  type MigrationReport,
  type MigrationSample,
  type MigrationState,
  type QueryMigrate,
  type TransportSession,
  type DiskCopyPlan,
  type DiskTransport,
} from '../migration/index.js';
import { DiskMirrors, inspectSourceDisks, mirrorPrefix, placeProbes } from '../block/index.js';
import { computeMigrationFlags, type ResolvedOptions } from '../config/index.js';
import {
  migrationSettings,
  planMigration,
  preflightError,
  type PreflightResult,
  type MigrationOverrides,
  type MigrationSettings,
  type TransportFigures,
  type PlanInput,
} from '../policy/index.js';
import type {
  AgentApi,
  DryRun,
  HandOver,
  HostSummary,
  LiveProgress,
  PlannedDryRun,
  StartedMigration,
} from './api-client.js';
import { SendQueue, busyRetryDelayMs, type QueuedItem } from '../maintenance/index.js';
import { sharedDiskIdentities, type PreflightAnswer } from './preflight.js';
import type { ConsoleTail } from './console-log.js';
import {
  deviceIds,
  diskImagePath,
  type QmpClient,
  type TunnelRelayKind,
  type VmSpec,
} from '../qemu/index.js';
import type { AgentTunnels } from './tunnels.js';
import type { Journal, MigrationRecord, StateChange } from './journal.js';
import type { JournalBacklog } from './journal-backlog.js';
import { markMigrationError } from './journal-write-errors.js';
import { requirePeer } from './peers.js';
import { journalRecorder } from './migration-recorder.js';
import { failpoint } from '../failpoints.js';
import type { LogFn } from '../log/index.js';
import type { ManagedVm, VmRegistry } from './vm-registry.js';

export interface OutgoingMigrationsOptions {
  hostName: string;
  registry: VmRegistry;
  journal: Journal;
  /** Where the journal writes of migrations past the point of no return wait for a full disk. */
  backlog: JournalBacklog;
  /** The API of the agent at `address` (cached by the caller). */
  peerApi: (address: string) => AgentApi;
  /** This agent's address as destinations reach it (undefined on a wildcard listener). */
  sourceAddress?: () => string | undefined;
  /** The operator's nova.conf: what the plan is made of. */
  migrationOptions: ResolvedOptions;
  /** This host, as the plan sees the source. */
  hostSummary: () => HostSummary;
  tunnels: AgentTunnels;
  qemuTlsDir: string | undefined;
  /** How long the forecast samples the guest dirty rate (calc-dirty-rate), seconds. */
  dirtyRateSampleSeconds: number;
  /** How often the monitor loop polls QEMU and records a sample, ms. */
  sampleIntervalMs: number;
  log: LogFn;
  /** Told when a migration starts and ends (the agent's metrics). */
  observer?: MigrationObserver;
  /** What this host measured of each secure transport to the agent at an address (the plan compares them). */
  transportFigures?: (to: string) => TransportFigures;
  /** nova's [DEFAULT] max_concurrent_live_migrations: how many run at once, the rest queue (0: no limit). */
  maxConcurrent?: number;
  /** `[vmferry] peers`: when set, the only agents new migrations may go to. */
  peers?: readonly string[];
}

/** A migration waiting in this host's queue: planned, its VM set aside for it. */
interface Queued extends QueuedItem {
  to: string;
  settings: MigrationSettings;
  /** A calibration's trial: the VM stays here when it completes. */
  trial?: boolean;
}

export interface MigrationObserver {
  migrationStarted(transport: string, tls: boolean): void;
  migrationFinished(report: MigrationReport): void;
}

interface Running {
  id: string;
  vm: string;
  to: string;
  driver: SourceMigration;
  done: Promise<MigrationReport>;
  spec: VmSpec;
  settings: MigrationSettings;
}

/** The source half of migrations from this host: starts, tracks, aborts and force-completes them. */
export class OutgoingMigrations {
  private readonly running = new Map<string, Running>();
  /** VMs whose migration is being planned: taken before start()'s first await, so only one starts. */
  private readonly planning = new Set<string>();
  private readonly queue = new SendQueue<Queued>();
  private wakeTimer: NodeJS.Timeout | undefined;
  /** How each migration started here ends, queued or running: its report, or why it never ran. */
  private readonly ends = new Map<string, Deferred<MigrationReport>>();
  private readonly options: OutgoingMigrationsOptions;

  constructor(options: OutgoingMigrationsOptions) {
    this.options = options;
  }

  /**
   * The dry run: the destination's pre-flight checks, then (when they pass) the plan
   * for migrating `vmName` to `to`, the guest's dirty rate sampled now, and whether
   * pre-copy is expected to converge.
   */
  async dryRun(vmName: string, to: string, overrides: MigrationOverrides): Promise<DryRun> {
    const vm = this.options.registry.get(vmName);
    const destination = this.destinationApi(to);
    const { target, checks } = await this.preflight(vm.spec, destination);
    const refused = preflightError(checks);
    if (refused !== undefined) {
      return {
        vm: vmName,
        to,
        checks,
        refused: { message: refused.message, ...(refused.hint !== undefined ? { hint: refused.hint } : {}) },
      };
    }
    const settings = await this.decide(vm.spec, target, to, destination, overrides);
    const estimate = await this.estimate(vmName, to, settings);
    return { vm: vmName, to, checks, settings, ...estimate };
  }

  /** The destination's pre-flight checks for moving `vmName` there (placement: nothing is started). */
  async checksFor(vmName: string, to: string): Promise<{ target: HostSummary; checks: PreflightResult[] }> {
    return this.preflight(this.options.registry.get(vmName).spec, this.destinationApi(to));
  }

  /** The API of the agent at `to`, refused unless `[vmferry] peers` (when set) lists it: for new work only. */
  destinationApi(to: string): AgentApi {
    requirePeer(to, this.options.peers ?? []);
    return this.options.peerApi(to);
  }

  /**
   * Asks the destination what its host can do (refusing this host itself) and to
   * run its pre-flight checks for this VM: memory, accelerator, QEMU, machine type,
   * CPU, shared disks, bridges. Nothing is prepared there.
   */
  private async preflight(
    spec: VmSpec,
    destination: AgentApi,
  ): Promise<{ target: HostSummary; checks: PreflightResult[] }> {
    const source = this.options.hostSummary();
    const target = await destination.host();
    checkDestinationName(destination, target.name);
    if (target.name === source.name) {
      throw new UsageError(
        `${destination.client.endpoint.url} is this host (${source.name}): a VM cannot migrate to itself`,
      );
    }
    const ask = (): Promise<PreflightAnswer> =>
      destination.preflight({
        spec,
        source: {
          name: source.name,
          accelerator: source.accelerator,
          qemuVersion: source.qemuVersion,
          hostCpu: source.hostCpu,
        },
        disks: sharedDiskIdentities(spec),
      });
    let answer = await ask();
    // The guest may write a shared disk's first or last MiB between the two hosts'
    // reads of it: look again before calling the files different.
    for (let again = 0; again < 2 && answer.checks.some(differentDisk); again++) answer = await ask();
    return { target, checks: answer.checks };
  }

  /** The plan for this VM and destination (src/policy), reduced to what the driver acts on. */
  private async decide(
    spec: VmSpec,
    target: HostSummary,
    to: string,
    destination: AgentApi,
    overrides: MigrationOverrides,
  ): Promise<MigrationSettings> {
    const plan = planMigration({
      options: this.options.migrationOptions,
      kind: 'live',
      memoryMiB: spec.memoryMiB,
      source: this.options.hostSummary(),
      destination: target,
      overrides,
      transportFigures: this.options.transportFigures?.(to) ?? {},
      disks: await this.diskFacts(spec, destination, target.name, overrides),
    });
    return migrationSettings(plan);
  }

  /**
   * What the plan decides the disks from. A live migration needs no look at
   * them (a local one is refused). A block migration asks the destination what
   * it sees of each disk, with a probe file in each disk's folder while it looks.
   */
  private async diskFacts(
    spec: VmSpec,
    destination: AgentApi,
    destinationHost: string,
    overrides: MigrationOverrides,
  ): Promise<NonNullable<PlanInput['disks']>> {
    const requested = blockRequest(overrides, this.options.migrationOptions);
    const live = spec.disks.map((d, i) => ({
      disk: i,
      storage: d.storage,
      path: d.path,
      format: d.format,
      virtualSize: 0,
    }));
    if (requested === undefined || spec.disks.length === 0) {
      return {
        mode: undefined,
        modeReason: { message: 'a live migration' },
        destinationHost,
        disks: live,
        destination: [],
      };
    }
    const instancesPath = this.options.registry.instancesPath;
    const disks = await inspectSourceDisks(spec.disks, instancesPath);
    const folders = spec.disks.map((d) => dirname(diskImagePath(d, instancesPath)));
    const probe = await placeProbes(folders);
    try {
      const views = await destination.checkDisks({
        sourceInstancesPath: instancesPath,
        probe: { name: probe.name, token: probe.token },
        disks: disks.map((d, i) => ({
          disk: d.disk,
          storage: d.storage,
          path: d.path,
          probed: probe.placed.has(folders[i] ?? ''),
          backing:
            d.backing === undefined ? undefined : { name: d.backing.name, identity: d.backing.identity },
        })),
      });
      return { ...requested, destinationHost, disks, destination: views };
    } finally {
      await probe.remove();
    }
  }

  /** Pre-flight, refused with every failed check at once, then the plan. */
  private async plan(spec: VmSpec, to: string, overrides: MigrationOverrides): Promise<MigrationSettings> {
    const destination = this.destinationApi(to);
    const { target, checks } = await this.preflight(spec, destination);
    const refused = preflightError(checks);
    if (refused !== undefined) throw refused;
    return this.decide(spec, target, to, destination, overrides);
  }

  /** Samples the guest's dirty rate and forecasts pre-copy for these settings. */
  private async estimate(
    vmName: string,
    to: string,
    settings: MigrationSettings,
  ): Promise<Omit<PlannedDryRun, 'vm' | 'to' | 'settings' | 'checks'>> {
    const vm = this.options.registry.get(vmName);
    const qmp = vm.qemu?.qmp;
    if (qmp === undefined) throw new ConflictError(`VM ${vmName} has no running QEMU`);
    const seconds = this.options.dirtyRateSampleSeconds;
    await qmp.execute('calc-dirty-rate', { 'calc-time': seconds, mode: 'page-sampling' });
    let measured: { status: string; 'dirty-rate'?: number } = { status: 'measuring' };
    const deadline = Date.now() + seconds * 1000 + 5000;
    while (measured.status !== 'measured' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      measured = await qmp.execute<{ status: string; 'dirty-rate'?: number }>('query-dirty-rate');
    }
    if (measured.status !== 'measured')
      throw new ConflictError(`QEMU did not finish measuring the dirty rate of ${vmName}`);
    const dirtyRateBps = (measured['dirty-rate'] ?? 0) * 1024 * 1024;
    const { throughputBps, throughputSource } = this.throughputTo(to, settings);
    const downtimeLimitMs = Math.max(300, ...settings.downtimeSteps.map((s) => s[1]));
    const forecast = forecastPrecopy({
      memoryBytes: vm.spec.memoryMiB * 1024 * 1024,
      dirtyRateBps,
      throughputBps,
      downtimeLimitMs,
      diskBytes: (settings.disks ?? []).reduce(
        (sum, d) => sum + (d.action === 'copy' ? (d.copyBytes ?? d.virtualSize) : 0),
        0,
      ),
    });
    return {
      dirtyRateBps,
      dirtyRateSampleSeconds: seconds,
      throughputBps,
      throughputSource,
      downtimeLimitMs,
      forecast,
    };
  }

  /** What the link to `to` is expected to carry: the bandwidth cap, else the last migration there, else 10 Gbit/s. */
  private throughputTo(
    to: string,
    settings: MigrationSettings,
  ): { throughputBps: number; throughputSource: string } {
    if (settings.bandwidthMiBps > 0) {
      return {
        throughputBps: settings.bandwidthMiBps * 1024 * 1024,
        throughputSource: `the bandwidth cap of ${settings.bandwidthMiBps} MiB/s`,
      };
    }
    const last = this.options.journal
      .listMigrations({ active: false })
      .filter((m) => m.role === 'source' && m.peer === to && m.state === 'completed')
      .map((m) => m.report as MigrationReport | null)
      .filter((r): r is MigrationReport => r !== null && r.gbps > 0)
      .at(-1);
    if (last !== undefined) {
      return {
        throughputBps: (last.gbps * 1e9) / 8,
        throughputSource: `the last migration to ${to} (${last.gbps} Gbit/s)`,
      };
    }
    return {
      throughputBps: 10e9 / 8,
      throughputSource: 'assumed 10 Gbit/s (no migration to this host measured yet)',
    };
  }

  /**
   * Plans migrating `vmName` to the agent at `to` (pre-flight checks included) and
   * queues it; it starts at once when fewer than max_concurrent_live_migrations run.
   * Returns with the migration id and, when it has to wait, its place in the queue.
   */
  async start(
    vmName: string,
    to: string,
    overrides: MigrationOverrides,
    options: { trial?: boolean } = {},
  ): Promise<StartedMigration> {
    // No await before the claim: of two requests for one VM, the second finds it taken.
    if (this.planning.has(vmName)) {
      throw new ConflictError(`VM ${vmName} is already being migrated: a migration of it is being planned`, {
        hint: 'wait for it: vmferry migration list shows it once it starts',
      });
    }
    this.requireRunning(vmName);
    this.planning.add(vmName);
    try {
      return await this.begin(vmName, to, overrides, options);
    } finally {
      this.planning.delete(vmName);
    }
  }

  private requireRunning(vmName: string): ManagedVm {
    const vm = this.options.registry.get(vmName);
    if (vm.state !== 'running') {
      throw new ConflictError(
        `VM ${vmName} is ${vm.state}${vm.migrationId ? ` (migration ${vm.migrationId})` : ''}`,
        {
          hint:
            vm.state === 'migrating'
              ? `wait for it or abort it: vmferry migrate --abort ${vm.migrationId ?? 'ID'}`
              : undefined,
        },
      );
    }
    return vm;
  }

  private async begin(
    vmName: string,
    to: string,
    overrides: MigrationOverrides,
    options: { trial?: boolean },
  ): Promise<StartedMigration> {
    const { registry, journal, backlog } = this.options;
    const settings = await this.plan(this.requireRunning(vmName).spec, to, overrides);
    // Planning awaited: the VM may have been stopped or have failed meanwhile.
    const vm = this.requireRunning(vmName);
    if (vm.qemu === undefined) throw new ConflictError(`VM ${vmName} has no running QEMU`);
    const id = randomUUID();
    // A migration that can start at once never shows as queued.
    const waits =
      this.queue.length > 0 || (this.maxConcurrent > 0 && this.running.size >= this.maxConcurrent);
    // Journaled before anything moves; if the journal cannot take it, nothing has.
    journal.createMigration({
      id,
      vm: vmName,
      role: 'source',
      peer: to,
      transport: settings.transport,
      plan: settings,
      state: waits ? 'queued' : 'preparing',
    });
    try {
      registry.setState(vmName, 'migrating', id);
    } catch (err) {
      const error = `the VM could not be marked migrating: ${describeError(err)}`;
      backlog.later(`migration ${id} failed`, (j) => j.setMigrationState(id, 'failed', { error }));
      throw err;
    }
    this.ends.set(id, deferred());
    this.queue.add({ id, vm: vmName, to, settings, ...(options.trial === true ? { trial: true } : {}) });
    this.pump();
    const position = this.queue.position(id);
    if (position !== undefined) {
      backlog.later(`migration ${id} queued`, (j) =>
        j.setMigrationState(id, 'queued', {
          message: `waiting for its turn: ${this.running.size} migration(s) running, max_concurrent_live_migrations = ${this.maxConcurrent}; place ${position} in the queue`,
        }),
      );
    }
    return { id, settings, ...(position !== undefined ? { queuePosition: position } : {}) };
  }

  private get maxConcurrent(): number {
    return this.options.maxConcurrent ?? 1;
  }

  /** Starts the queued migrations that may run now, and wakes up again for one waiting on a busy destination. */
  private pump(): void {
    const now = Date.now();
    for (const item of this.queue.takeReady(this.running.size, this.maxConcurrent, now)) this.launch(item);
    clearTimeout(this.wakeTimer);
    const next = this.queue.nextWakeUp(now);
    if (next !== undefined) {
      this.wakeTimer = setTimeout(() => this.pump(), next - now);
      this.wakeTimer.unref();
    }
  }

  /** Runs one migration's driver; its report comes back through finish(). */
  private launch(item: Queued): void {
    const { registry, journal, backlog } = this.options;
    const { id, vm: vmName, to, settings } = item;
    const qemu = registry.has(vmName) ? registry.get(vmName).qemu : undefined;
    if (qemu === undefined || !qemu.alive) {
      const error = `VM ${vmName} has no running QEMU any more`;
      backlog.later(`migration ${id} failed`, (j) =>
        j.setMigrationState(id, 'failed', { message: error, error }),
      );
      this.settle(id, new ConflictError(error));
      if (registry.has(vmName)) registry.setState(vmName, 'failed', undefined, 'eventually');
      return;
    }
    const destination = this.options.peerApi(to);
    this.options.observer?.migrationStarted(settings.transport, settings.tls);
    const peer = peerOverApi(destination, to, () => registry.consoleTail(vmName));
    const spec = registry.get(vmName).spec;
    const driver = new SourceMigration({
      id,
      sourceHost: this.options.hostName,
      request: this.incomingRequest(spec, settings),
      settings,
      qmp: qemu.qmp,
      peer,
      openTransport: (reply) => this.openTransport(id, settings, reply, destination),
      recorder: journalRecorder({ id, journal, backlog, log: this.options.log, reached: 'preparing' }),
      clock: systemClock(),
      failpoint,
      tlsCredsDir: this.options.qemuTlsDir,
      forecast: async () => (await this.estimate(vmName, to, settings)).forecast,
      pollMs: this.options.sampleIntervalMs,
      trial: item.trial === true,
      disks: this.diskCopyPlan(id, settings, destination),
    });
    const done = driver
      .run()
      .then((report) => this.finish(report, item))
      .catch((err: unknown) => {
        // run() reports failures in its report and finish() does not throw: reaching here is a bug.
        // The agent's policy for unexpected rejections recovers the migration as after a restart.
        this.running.delete(id);
        this.settle(id, err instanceof Error ? err : new Error(String(err)));
        this.pump();
        throw markMigrationError(err, id);
      });
    this.running.set(id, { id, vm: vmName, to, driver, done, spec, settings });
    this.options.log(
      `migration ${id}: ${vmName} -> ${to} (${settings.transport}${settings.tls ? ', TLS' : ''}, ${settings.channels} channel(s))`,
      { migration: id, vm: vmName },
    );
  }

  /** The report of a migration this agent is sending, when it ends. */
  finished(id: string): Promise<MigrationReport> {
    const end = this.ends.get(id);
    if (end === undefined) throw new NotFoundError(`no queued or running migration ${id} on this host`);
    return end.promise;
  }

  /** The migration ended (report) or never ran (error): whoever waits in finished() learns it. */
  private settle(id: string, outcome: MigrationReport | Error): void {
    const end = this.ends.get(id);
    if (end === undefined) return;
    this.ends.delete(id);
    if (outcome instanceof Error) end.reject(outcome);
    else end.resolve(outcome);
  }

  /** What the destination is asked to prepare (the driver adds the migration's id and this host). */
  private incomingRequest(
    spec: VmSpec,
    settings: MigrationSettings,
  ): Omit<IncomingRequest, 'migrationId' | 'sourceHost'> {
    const { registry } = this.options;
    const sourceAddress = this.options.sourceAddress?.();
    return {
      spec,
      settings,
      sourceAccelerator: registry.accelerator,
      sourceQemuVersion: this.options.hostSummary().qemuVersion,
      ...(settings.disks !== undefined ? { sourceInstancesPath: registry.instancesPath } : {}),
      ...(sourceAddress !== undefined ? { sourceAddress } : {}),
    };
  }

  /**
   * After a restart: a migration that was still queued keeps its place (queued
   * migrations started nothing anywhere).
   */
  requeueAfterRestart(m: MigrationRecord): void {
    this.queue.add({ id: m.id, vm: m.vm, to: m.peer, settings: m.plan });
    this.options.journal.setMigrationState(m.id, 'queued', {
      message: 'the agent restarted; the migration keeps its place in the queue',
    });
    this.pump();
  }

  liveProgress(id: string): LiveProgress | undefined {
    const position = this.queue.position(id);
    if (position !== undefined) return { state: 'queued', sample: undefined, queuePosition: position };
    return this.running.get(id)?.driver.progress;
  }

  /** Every migration this agent is sending, with its latest sample. */
  live(): { id: string; vm: string; state: string; sample: MigrationSample | undefined }[] {
    return [
      ...[...this.running.values()].map((r) => ({ id: r.id, vm: r.vm, ...r.driver.progress })),
      ...this.queue.list().map((q) => ({ id: q.id, vm: q.vm, state: 'queued', sample: undefined })),
    ];
  }

  /** Migrations sending now, and waiting in the queue. */
  counts(): { running: number; queued: number } {
    return { running: this.running.size, queued: this.queue.length };
  }

  /** Operator abort; refused once the guest may run on the destination (hand-over or post-copy). */
  abort(id: string): void {
    if (this.cancelQueued(id, 'aborted by the operator while queued')) return;
    const { driver, to } = this.get(id);
    const { state } = driver.progress;
    if (state === 'completing' || state === 'postcopy') {
      throw new ConflictError(
        `migration ${id} cannot be aborted: it is ${state === 'postcopy' ? 'in post-copy' : 'handing over'}, ` +
          `the guest ${state === 'postcopy' ? 'runs' : 'may already run'} on ${to}`,
        { hint: 'it finishes on its own; vmferry migration show ID says how far it is' },
      );
    }
    driver.abort();
  }

  /** Takes a queued migration out of the queue: cancelled, its VM free again. False when it is not queued. */
  private cancelQueued(id: string, reason: string): boolean {
    const item = this.queue.remove(id);
    if (item === undefined) return false;
    this.options.journal.setMigrationState(id, 'cancelled', { message: reason, error: reason });
    this.settle(id, new ConflictError(`migration ${id} was cancelled while queued: ${reason}`));
    const { registry } = this.options;
    if (registry.has(item.vm) && registry.get(item.vm).migrationId === id)
      registry.setState(item.vm, 'running');
    this.options.log(`migration ${id} of ${item.vm} cancelled while queued: ${reason}`, {
      migration: id,
      vm: item.vm,
    });
    return true;
  }

  forceComplete(id: string): void {
    this.get(id).driver.forceComplete();
  }

  /**
   * Aborts every running migration and waits until each has put its VM back, for
   * up to `waitMs`: a hand-over in doubt cannot be aborted and waits for its
   * destination; it stays 'completing' in the journal and is settled after the restart.
   */
  async abortAll(reason: string, waitMs = 20_000): Promise<void> {
    for (const q of [...this.queue.list()]) this.cancelQueued(q.id, reason);
    const all = [...this.running.values()];
    for (const r of all) r.driver.abort(reason);
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>(
      (resolve) => (timer = setTimeout(() => resolve('timeout'), waitMs)),
    );
    const settled = await Promise.race([Promise.allSettled(all.map((r) => r.done)), gaveUp]);
    clearTimeout(timer);
    if (settled === 'timeout') {
      this.options.log(
        `stopping with ${[...this.running.keys()].join(', ')} still settling; they are settled after the restart`,
      );
    }
  }

  /**
   * A migration nothing drives any more (the agent restarted, or its task ended
   * unexpectedly), finished, settled or called off from what the journal and the
   * source QEMU say. Post-copy and hand-overs in doubt go on in the background
   * (the destination may run the guest: they are finished, not undone); returns
   * once it is called off or under way.
   */
  async takeUp(m: MigrationRecord, reason: string): Promise<void> {
    if (this.running.has(m.id) || this.queue.has(m.id)) return;
    const background = (work: Promise<void>): void => {
      work.catch((err: unknown) =>
        this.options.log(`migration ${m.id} (${reason}): ${describeError(err)}`, {
          level: 'error',
          migration: m.id,
          vm: m.vm,
        }),
      );
    };
    if (m.state === 'completing') return background(this.settleAfterRestart(m));
    if (m.state === 'postcopy') return background(this.finishPostcopyAfterRestart(m));
    const qmp = this.options.registry.qmpOf(m.vm);
    const info = await qmp?.execute<QueryMigrate>('query-migrate').catch(() => undefined);
    const action = interruptedSourceAction(info);
    if (action === 'finish-postcopy') return background(this.finishPostcopyAfterRestart(m));
    if (action === 'settle') return background(this.settleAfterRestart(m));
    await this.callOff(m, reason);
  }

  /**
   * A migration cut off before the destination could run the guest: the destination
   * is told to drop its copy first (it refuses if the guest runs there after all),
   * then the source guest resumes.
   */
  private async callOff(m: MigrationRecord, reason: string): Promise<void> {
    const { registry, log } = this.options;
    const fields = { migration: m.id, vm: m.vm };
    let there: 'dropped' | 'running' | 'unreachable';
    try {
      await this.options.peerApi(m.peer).abortIncoming(m.id, reason, { timeoutMs: 5000 });
      there = 'dropped';
    } catch (err) {
      there =
        err instanceof NotFoundError ? 'dropped' : err instanceof ConflictError ? 'running' : 'unreachable';
      if (there === 'unreachable')
        log(
          `could not tell ${m.peer} to drop migration ${m.id}: ${describeError(err)}; it asks this host later`,
          {
            level: 'warn',
            ...fields,
          },
        );
    }
    if (there === 'running') {
      if (registry.has(m.vm)) await registry.destroy(m.vm);
      this.journalLater(m.id, 'completed', {
        message: `${reason}; ${m.peer} runs the guest, this copy is let go`,
      });
      log(`migration ${m.id}: ${m.peer} runs ${m.vm}; let go here`, fields);
      return;
    }
    const qmp = registry.qmpOf(m.vm);
    if (qmp !== undefined) await this.giveUpDiskCopies(m, qmp);
    const restored =
      qmp !== undefined ? await restoreSourceGuest(qmp) : { outcome: 'gone', message: 'its QEMU is gone' };
    if (restored.outcome === 'running') registry.setState(m.vm, 'running', undefined, 'eventually');
    this.journalLater(m.id, 'failed', { message: `${reason}; ${restored.message}`, error: reason });
    log(`migration ${m.id} called off (${reason}): VM ${m.vm}: ${restored.message}`, {
      level: 'warn',
      ...fields,
    });
  }

  /**
   * After a restart: a migration cut off in post-copy. The guest runs on the
   * destination and this host's QEMU still holds pages it needs, so the migration
   * is finished, not abandoned: the stream is recovered whenever it is broken (it
   * is, if it went through this agent's tunnel), the destination is told once
   * QEMU has sent everything, and only then is the source QEMU let go.
   */
  async finishPostcopyAfterRestart(m: MigrationRecord): Promise<void> {
    const { registry, log } = this.options;
    const qmp = registry.qmpOf(m.vm);
    if (qmp === undefined) {
      const error = 'the source QEMU died during post-copy: the guest on the destination lacks pages';
      this.journalLater(m.id, 'failed', { message: error, error });
      log(`migration ${m.id}: ${error}`, { level: 'warn', migration: m.id, vm: m.vm });
      return;
    }
    const destination = this.options.peerApi(m.peer);
    const peer = peerOverApi(destination, m.peer, () => registry.consoleTail(m.vm));
    const settings = m.plan;
    this.journalLater(m.id, 'postcopy', {
      message: 'the agent restarted during post-copy; finishing it (the guest runs on the destination)',
    });
    try {
      const end = await finishPostcopy({
        qmp,
        peer,
        migrationId: m.id,
        openTransport: (reply) => this.openTransport(m.id, settings, reply, destination),
        clock: backgroundClock,
        transport: undefined,
        wait: () => backgroundClock.sleep(this.options.sampleIntervalMs),
        onRecovery: (attempt, error) => {
          if (error === undefined) {
            this.journalLater(m.id, 'postcopy', {
              message: 'post-copy resumed over a new connection after the restart',
            });
          } else if (attempt <= 5 || attempt % 30 === 0) {
            log(`migration ${m.id}: post-copy recovery failed: ${describeError(error)}; trying again`, {
              level: 'warn',
              migration: m.id,
              vm: m.vm,
            });
          }
        },
      });
      await closeTransport(end.transport);
    } catch (err) {
      // QEMU left post-copy some other way than completing: the guest on the destination lacks pages.
      if (err instanceof MigrationError) {
        this.journalLater(m.id, 'failed', { message: err.message, error: err.message });
      }
      throw err;
    }
    await peer.complete(m.id).catch(async (err: unknown) => {
      // The guest runs there in post-copy: the destination cannot have dropped it.
      await settleHandOver({ peer, migrationId: m.id, cause: err, sleep: (ms) => backgroundClock.sleep(ms) });
    });
    await registry.destroy(m.vm);
    this.journalLater(m.id, 'completed', {
      message: `post-copy finished after a restart: the VM runs on ${m.peer}`,
    });
    log(`migration ${m.id}: post-copy finished after a restart, ${m.vm} runs on ${m.peer}`, {
      migration: m.id,
      vm: m.vm,
    });
  }

  /**
   * After a restart: a migration cut off during its hand-over may have started the
   * guest on the destination. Settles it with the destination (settleHandOver): the
   * VM is forgotten here if it runs there, else the source guest resumes. The source
   * guest stays paused until the destination answers.
   */
  async settleAfterRestart(m: MigrationRecord): Promise<void> {
    const { registry, log } = this.options;
    const peer = peerOverApi(this.options.peerApi(m.peer), m.peer, () =>
      registry.has(m.vm) ? registry.consoleTail(m.vm) : undefined,
    );
    this.journalLater(m.id, 'completing', {
      message: `the agent restarted during the hand-over; settling it with ${m.peer}`,
    });
    const outcome = await settleHandOver({
      peer,
      migrationId: m.id,
      cause: new MigrationError('the agent restarted during the hand-over'),
      sleep: (ms) => backgroundClock.sleep(ms),
      onWaiting: (message) => this.journalLater(m.id, 'completing', { message }),
    });
    if (outcome === 'running') {
      if (registry.has(m.vm)) await registry.destroy(m.vm);
      this.journalLater(m.id, 'completed', {
        message: `settled after a restart: the VM runs on ${m.peer}`,
      });
      log(`migration ${m.id}: settled after a restart, ${m.vm} runs on ${m.peer}`, {
        migration: m.id,
        vm: m.vm,
      });
      return;
    }
    const qmp = registry.qmpOf(m.vm);
    if (qmp !== undefined) await this.giveUpDiskCopies(m, qmp);
    const restored =
      qmp !== undefined ? await restoreSourceGuest(qmp) : { outcome: 'gone', message: 'its QEMU is gone' };
    if (restored.outcome === 'running') registry.setState(m.vm, 'running', undefined, 'eventually');
    const reason = `the agent restarted during the hand-over and ${m.peer} ${outcome === 'dropped' ? 'dropped its copy' : 'never got the request to start the guest'}`;
    this.journalLater(m.id, 'failed', { message: `${reason}; ${restored.message}`, error: reason });
    log(`migration ${m.id}: ${reason}; ${restored.message}`, { level: 'warn', migration: m.id, vm: m.vm });
  }

  /**
   * Block migration called off after a restart: the disk copies the previous process
   * left in the source QEMU are given up (the guest stays on its own images).
   */
  private async giveUpDiskCopies(m: MigrationRecord, qmp: QmpClient): Promise<void> {
    const { disks, problems } = await DiskMirrors.giveUpLeftovers(qmp, mirrorPrefix(m.id));
    const fields = { migration: m.id, vm: m.vm };
    if (disks.length > 0)
      this.options.log(
        `migration ${m.id}: gave up the copies of disk(s) ${disks.join(', ')} left running`,
        fields,
      );
    for (const p of problems)
      this.options.log(`migration ${m.id}: giving up the disk copies: ${p}`, { level: 'warn', ...fields });
  }

  /** Journals a state change of a migration past the point of no return: when the disk allows. */
  private journalLater(id: string, state: MigrationState, change: StateChange): void {
    this.options.backlog.later(`migration ${id} ${state}`, (j) => j.setMigrationState(id, state, change));
  }

  private get(id: string): Running {
    const r = this.running.get(id);
    if (r === undefined) {
      const record = this.options.journal.getMigration(id);
      if (record === undefined) throw new NotFoundError(`no migration ${id} on this host`);
      throw new ConflictError(`migration ${id} is not running here (it is ${record.state})`);
    }
    return r;
  }

  private async openTransport(
    id: string,
    settings: MigrationSettings,
    reply: IncomingReply,
    destination: AgentApi,
  ): Promise<TransportSession> {
    const { client } = destination;
    if (settings.transport === 'native') {
      if (reply.uri === undefined)
        throw new PeerError('the destination did not say where to send the stream');
      return { uri: reachableUri(reply.uri, client.endpoint.host), close: () => undefined };
    }
    if (reply.tunnelToken === undefined) throw new PeerError('the destination did not give a tunnel token');
    return this.options.tunnels.open({
      migrationId: id,
      token: reply.tunnelToken,
      destination: client,
      destinationHost: reply.destinationHost,
      mode: settings.tunnel,
      ...(settings.relay !== undefined ? { relay: settings.relay } : {}),
      ...(reply.naivePort !== undefined ? { naivePort: reply.naivePort } : {}),
      ...(reply.relayPort !== undefined ? { relayPort: reply.relayPort } : {}),
    });
  }

  /** Block migration: the disks the driver copies, and the way to the destination's NBD server. */
  private diskCopyPlan(
    id: string,
    settings: MigrationSettings,
    destination: AgentApi,
  ): DiskCopyPlan | undefined {
    const copies = (settings.disks ?? []).filter((p) => p.action === 'copy');
    if (copies.length === 0) return undefined;
    return {
      disks: copies.map((p) => ({
        disk: p.disk,
        nodeName: deviceIds('disk', p.disk).backend,
        exportName: `disk${p.disk}`,
        sync: p.sync ?? 'full',
      })),
      speed: settings.bandwidthMiBps * 1024 * 1024,
      open: (reply) => this.openDiskTransport(id, reply, destination, settings.relay),
    };
  }

  private async openDiskTransport(
    id: string,
    reply: IncomingReply,
    destination: AgentApi,
    relay: TunnelRelayKind | undefined,
  ): Promise<DiskTransport> {
    const way = reply.disks;
    if (way === undefined) throw new PeerError('the destination did not say where to send the disks');
    if (way.type === 'inet') {
      const host = reachableHost(way.host, destination.client.endpoint.host);
      return { target: { type: 'inet', host, port: way.port }, close: () => undefined };
    }
    if (reply.tunnelToken === undefined) throw new PeerError('the destination did not give a tunnel token');
    const tunnel = await this.options.tunnels.openDisks({
      migrationId: id,
      token: reply.tunnelToken,
      destination: destination.client,
      destinationHost: reply.destinationHost,
      ...(relay !== undefined ? { relay } : {}),
    });
    return { target: { type: 'unix', path: tunnel.path }, close: tunnel.close };
  }

  /**
   * After a block migration, once the guest runs on the destination: the source's
   * images of the local disks it copied are removed (kept with --keep-source-disks),
   * with their folder under instances_path when it is left empty.
   */
  private async removeSourceImages(r: Running): Promise<string[]> {
    if (r.settings.keepSourceDisks === true) return [];
    const instancesPath = this.options.registry.instancesPath;
    const removed: string[] = [];
    for (const plan of r.settings.disks ?? []) {
      const disk = r.spec.disks[plan.disk];
      if (plan.action !== 'copy' || disk?.storage !== 'local') continue;
      const path = diskImagePath(disk, instancesPath);
      await rm(path, { force: true });
      removed.push(path);
      if (dirname(path) !== resolve(instancesPath)) await rmdir(dirname(path)).catch(() => undefined);
    }
    return removed;
  }

  /** Ends a migration here: a busy destination puts it back in the queue, else its end is recorded. */
  private async finish(report: MigrationReport, item: Queued): Promise<MigrationReport> {
    const { registry, backlog } = this.options;
    const running = this.running.get(report.id);
    this.running.delete(report.id);
    if (report.destinationBusy === true && registry.has(report.vm)) {
      // The destination receives as many migrations as it may: wait for a turn there.
      const retries = (item.busyRetries ?? 0) + 1;
      const delay = busyRetryDelayMs(retries);
      this.queue.add({ ...item, busyRetries: retries, notBefore: Date.now() + delay }, { front: true });
      backlog.later(`migration ${report.id} queued again`, (j) =>
        j.setMigrationState(report.id, 'queued', {
          message: `${report.to} is busy (${report.error ?? 'no reason given'}); trying again in ${delay / 1000} s`,
        }),
      );
      this.pump();
      return report;
    }
    try {
      return await this.record(report, item.trial === true, running);
    } finally {
      this.pump();
    }
  }

  /** A migration that ended: its VM let go or running again, its end journaled (when the disk allows). */
  private async record(
    report: MigrationReport,
    trial: boolean,
    running: Running | undefined,
  ): Promise<MigrationReport> {
    const { registry, backlog } = this.options;
    this.options.observer?.migrationFinished(report);
    if (report.status === 'completed' && !trial) {
      await registry.destroy(report.vm);
      if (running !== undefined) {
        const removed = await this.removeSourceImages(running).catch((err: unknown) => {
          report.events.push(`could not remove the source's disk images: ${describeError(err)}`);
          return [];
        });
        if (removed.length > 0) report.events.push(`removed the source's images ${removed.join(', ')}`);
      }
    } else if (registry.has(report.vm)) {
      const state = registry.get(report.vm).qemu?.alive === false ? 'failed' : 'running';
      registry.setState(report.vm, state, undefined, 'eventually');
    }
    const message =
      report.error !== undefined
        ? `${report.error}; ${report.guestDetail}`
        : trial
          ? `trial: ${report.guestDetail}`
          : `the VM runs on ${report.to}; guest ${report.guest}: ${report.guestDetail}`;
    backlog.later(`migration ${report.id} ${report.status}`, (j) =>
      j.setMigrationState(report.id, report.status, {
        message,
        report,
        ...(report.error ? { error: report.error } : {}),
      }),
    );
    this.settle(report.id, report);
    this.options.log(
      `migration ${report.id} ${report.status}: ${report.bytes} bytes in ${report.seconds} s (${report.gbps} Gbit/s), guest ${report.guest}${report.error ? `; ${report.error}` : ''}`,
      { level: report.status === 'completed' ? 'info' : 'warn', migration: report.id, vm: report.vm },
    );
    return report;
  }
}

/** Waits that do not keep the process alive (for work the agent carries on after a restart). */
const backgroundClock = systemClock({ background: true });

/** A destination listening on a wildcard address is reached at the address we reach its agent on. */
export function reachableHost(host: string, agentHost: string | undefined): string {
  return ['0.0.0.0', '::', '[::]'].includes(host) && agentHost !== undefined ? agentHost : host;
}

/**
 * Whether this migration copies disks, and why: asked for (`--block`, `--block
 * auto`), or nova's live flags have VIR_MIGRATE_NON_SHARED_DISK, with which
 * libvirt copies the disks of every migration.
 */
export function blockRequest(
  overrides: MigrationOverrides,
  options: ResolvedOptions,
): Pick<NonNullable<PlanInput['disks']>, 'mode' | 'modeReason'> | undefined {
  if (overrides.block !== undefined) {
    return {
      mode: overrides.block,
      modeReason: {
        message: `asked for with --block${overrides.block === 'auto' ? ' auto' : ''} (override)`,
      },
    };
  }
  const nova = computeMigrationFlags(options);
  if (nova.live.includes('VIR_MIGRATE_NON_SHARED_DISK')) {
    const option = nova.mode === 'legacy' ? 'libvirt.live_migration_flag' : undefined;
    return {
      mode: 'all',
      modeReason: {
        option,
        message: `${option ?? "nova's live flags"} has VIR_MIGRATE_NON_SHARED_DISK: every migration copies its local disks`,
      },
    };
  }
  return undefined;
}

/** A destination listening on a wildcard address is reached at the address we reach its agent on. */
export function reachableUri(uri: string, agentHost: string | undefined): string {
  const m = /^tcp:(0\.0\.0\.0|\[::\]|::):(\d+)$/.exec(uri);
  if (m === null || agentHost === undefined) return uri;
  return `tcp:${agentHost.includes(':') ? `[${agentHost}]` : agentHost}:${m[2] ?? ''}`;
}

/**
 * The name a destination gives itself must be the one its certificate (a host's,
 * checked against the address dialled) names: QEMU's TLS and the tunnel check the
 * peer against that name, so a host cannot pass itself off as another.
 */
function checkDestinationName(api: AgentApi, claimed: string): void {
  const verified = api.client.verifiedName;
  if (verified === undefined || claimed !== verified) {
    throw new AuthError(
      `the agent at ${api.client.endpoint.url} calls itself ${JSON.stringify(claimed)} but its certificate names ${JSON.stringify(verified ?? 'nobody')}`,
      { hint: 'migrate to the address of the host its certificate was issued for' },
    );
  }
}

/**
 * The destination agent, as the migration driver talks to it. Starting the
 * guest there (resume, complete) carries the source's console, read then
 * because the source guest is paused from then on.
 */
export function peerOverApi(
  api: AgentApi,
  name: string,
  consoleTail: () => ConsoleTail | undefined = () => undefined,
): DestinationPeer {
  const handOver = (): HandOver => {
    const tail = consoleTail();
    return tail !== undefined ? { consoleTail: tail } : {};
  };
  return {
    name,
    prepare: async (request) => {
      const reply = await api.prepareIncoming(request);
      checkDestinationName(api, reply.destinationHost);
      return reply;
    },
    resume: (id) => api.resumeIncoming(id, handOver()),
    recover: (id) => api.recoverIncoming(id),
    complete: (id) => api.completeIncoming(id, handOver()),
    guestHealth: (id) => api.incomingGuest(id),
    abort: async (id, reason) => {
      try {
        await api.abortIncoming(id, reason);
        return 'dropped';
      } catch (err) {
        // Nothing of it there: dropped already, or never prepared. A conflict: the guest runs there.
        if (err instanceof NotFoundError) return 'dropped';
        if (err instanceof ConflictError) return 'running';
        throw err;
      }
    },
  };
}

/** A failed shared-disk check that may be a race with the guest's writes rather than another file. */
function differentDisk(r: PreflightResult): boolean {
  return !r.ok && r.check.startsWith('disk ') && r.message.endsWith('its first or last MiB differs');
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: Error) => void;
}

/** A promise with its resolve and reject at hand (Promise.withResolvers is Node 22). */
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may wait: a rejection must not become an unhandled one.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
