import {
  AuthError,
  ConflictError,
  LimitError,
  MigrationError,
  NotFoundError,
  UsageError,
  describeError,
} from '../errors.js';
import {
  DestinationMigration,
  interruptedDestinationAction,
  isTerminalMigrationState,
  orphanVerdict,
  systemClock,
  type GuestVerdict,
  type IncomingEndpoints,
  type IncomingReply,
  type IncomingRequest,
  type MigrationState,
} from '../migration/index.js';
import { failpoint } from '../failpoints.js';
import {
  checkIncomingStream,
  checkMigrationSettings,
  preflightError,
  type DestinationDiskView,
  type MigrationSettings,
} from '../policy/index.js';
import { createServer } from 'node:net';
import { isAbsolute } from 'node:path';
import { checkDiskCheckRequest, createTargetImages, removeLeftovers, viewDisks } from '../block/index.js';
import { deviceIds, validateVmSpec, type QmpClient } from '../qemu/index.js';
import type { AgentApi } from './api-client.js';
import type { HostFacts } from './preflight.js';
import type { ConsoleTail } from './console-log.js';
import type { Journal, MigrationRecord, StateChange } from './journal.js';
import type { JournalBacklog } from './journal-backlog.js';
import type { AgentTunnels } from './tunnels.js';
import type { LogFn } from '../log/index.js';
import type { VmRegistry } from './vm-registry.js';

interface IncomingMigration {
  id: string;
  vmName: string;
  /** The source agent's certificate name (the source host): only it may drive the migration here. */
  owner: string;
  driver: DestinationMigration;
  /** Where to ask the source agent about it, and since when it waits here (ms). */
  sourceAddress?: string;
  preparedAt?: number;
  /** Set by the first complete(): a repeated call, or an abort, waits for its outcome. */
  completing?: Promise<void>;
  /** Set by abort() once it decided to drop the copy: complete() may no longer start the guest. */
  dropping?: boolean;
}

export interface IncomingMigrationsOptions {
  hostName: string;
  /** This host's capacity and pre-flight checks. */
  facts: HostFacts;
  /** Address the destination QEMU listens on for native migration streams. */
  migrationAddress: string;
  /** This host's own say on streams: clear text allowed?, and was the address chosen by an operator? */
  permitCleartext: boolean;
  migrationAddressConfigured: boolean;
  /** [vmferry] max_incoming_migrations: prepares beyond it (those in progress counted) get 429, their sources wait. */
  maxIncoming: number;
  registry: VmRegistry;
  journal: Journal;
  /** Where the journal writes of a guest that runs here (or is dropped) wait for a full disk. */
  backlog: JournalBacklog;
  tunnels: AgentTunnels;
  qemuTlsDir: string | undefined;
  log: LogFn;
  /** The API of the source agent at `address`, whose certificate must name `peerName`. */
  sourceApi?: (address: string, peerName: string) => AgentApi;
  /** How long an incoming copy may wait before the source is asked about it (ms); 0: never. */
  orphanCheckMs?: number;
}

/**
 * The destination migrations of this host: their records, who may drive them,
 * and their VMs. Each one's QEMU work is its DestinationMigration
 * (src/migration); this keeps the journal and the registry in step with it and
 * drops everything when the source gives up or the incoming QEMU dies.
 */
export class IncomingMigrations {
  private readonly active = new Map<string, IncomingMigration>();
  private orphanTimer: NodeJS.Timeout | undefined;
  private readonly options: IncomingMigrationsOptions;
  private readonly endpoints: IncomingEndpoints;
  private readonly clock = systemClock();

  constructor(options: IncomingMigrationsOptions) {
    this.options = options;
    const { tunnels } = options;
    this.endpoints = {
      migrationAddress: options.migrationAddress,
      incomingPath: (id) => tunnels.incomingPath(id),
      acceptTunnel: (t) => tunnels.accept(t),
      closeTunnel: (id) => tunnels.close(id),
      incomingDisksPath: (id) => tunnels.incomingDisksPath(id),
      acceptDiskTunnel: (t) => tunnels.acceptDisks(t),
      freePort,
    };
  }

  /** Migrations this host receives now. */
  count(): number {
    return this.active.size;
  }

  /**
   * Whether this host takes the migration at all: within max_incoming_migrations
   * (prepares in progress counted), on its own transport policy, and passing its
   * pre-flight checks again (memory may have been promised since, and a source may
   * not have asked at all). Throws the refusal.
   */
  private admit(request: IncomingRequest): void {
    const { registry } = this.options;
    const receiving = this.active.size + this.options.facts.reservations();
    if (receiving >= this.options.maxIncoming) {
      throw new LimitError(
        `${this.options.hostName} receives ${receiving} migration(s) already, as many as max_incoming_migrations = ${this.options.maxIncoming} allows`,
        { hint: 'the source keeps the migration queued and asks again' },
      );
    }
    const refused = preflightError([
      checkIncomingStream(request.settings, {
        host: this.options.hostName,
        permitCleartext: this.options.permitCleartext,
        migrationAddress: this.options.migrationAddress,
        migrationAddressConfigured: this.options.migrationAddressConfigured,
      }),
      ...this.options.facts.check({
        spec: request.spec,
        source: {
          name: request.sourceHost,
          accelerator: request.sourceAccelerator ?? registry.accelerator,
          qemuVersion: request.sourceQemuVersion ?? this.options.facts.qemuVersion,
        },
      }),
    ]);
    if (refused !== undefined) throw refused;
  }

  /** A source agent asks this host to receive a VM: an incoming QEMU, listening. */
  async prepare(body: unknown, peerCommonName: string): Promise<IncomingReply> {
    const claimed = (body as { sourceHost?: unknown } | null)?.sourceHost;
    const sourceHost = typeof claimed === 'string' ? claimed : 'unknown';
    if (sourceHost !== peerCommonName) {
      throw new AuthError(
        `a migration from ${sourceHost} must be asked for by that agent, not by ${peerCommonName}`,
      );
    }
    const request = validateIncoming(body);
    const { registry, journal } = this.options;
    this.admit(request);
    if (this.active.has(request.migrationId))
      throw new ConflictError(`migration ${request.migrationId} is already prepared`);
    const spec = { ...request.spec, memoryBackend: { kind: 'ram' as const } };
    journal.createMigration({
      id: request.migrationId,
      vm: spec.name,
      role: 'destination',
      peer: request.sourceHost,
      transport: request.settings.transport,
      plan: request.settings,
      state: 'preparing',
    });
    let entry: IncomingMigration | undefined;
    // Counted against the limit and the memory from now, before the first await lets another prepare in.
    const release = this.options.facts.reserve(spec.memoryMiB);
    try {
      const vm = await this.createImages(request)
        .then(() => registry.prepareIncoming(spec, request.migrationId))
        .finally(release);
      entry = this.track(request.migrationId, spec.name, request.sourceHost, request.settings, vm.qemu!.qmp);
      entry.preparedAt = Date.now();
      if (request.sourceAddress !== undefined) entry.sourceAddress = request.sourceAddress;
      const reply = await entry.driver.listen();
      journal.setMigrationState(entry.id, 'migrating', {
        message: `incoming QEMU waiting (${request.settings.transport})`,
      });
      const { id } = entry;
      void vm.qemu!.exited.then(() => {
        if (this.active.has(id))
          void this.fail(id, 'the incoming QEMU exited before the migration completed');
      });
      await failpoint('incoming.prepared');
      if (!this.active.has(id))
        throw new MigrationError('the incoming QEMU exited while it was being prepared');
      return reply;
    } catch (err) {
      await this.fail(request.migrationId, `preparing failed: ${describeError(err)}`, entry);
      throw err;
    }
  }

  /**
   * Block migration: the new images of the copied disks, before the incoming QEMU
   * opens them, each journaled before it is made (a restart removes them: takeUp).
   */
  private async createImages(request: IncomingRequest): Promise<void> {
    const plans = request.settings.disks ?? [];
    if (!plans.some((p) => p.action === 'copy')) return;
    if (plans.length !== request.spec.disks.length) {
      throw new UsageError(
        `settings.disks has ${plans.length} disk plans for a VM with ${request.spec.disks.length} disks`,
      );
    }
    const { journal } = this.options;
    const id = request.migrationId;
    const images = await createTargetImages({
      migrationId: id,
      ledger: {
        creating: (path, kind) => journal.fileCreating(id, path, kind),
        created: (path) => journal.fileCreated(id, path),
      },
      disks: request.spec.disks,
      plans,
      instancesPath: this.options.registry.instancesPath,
      sourceInstancesPath: request.sourceInstancesPath,
    });
    this.options.registry.handToQemu(images.files);
  }

  /**
   * Removes the images and folders a failed migration made here (after its QEMU is
   * gone), from what the journal says it made: never a file it did not make.
   * What cannot be removed is logged.
   */
  private async removeImages(id: string): Promise<void> {
    const { journal, log } = this.options;
    let files;
    try {
      files = journal.migrationFiles(id);
    } catch (err) {
      log(`migration ${id}: cannot read which images it made here: ${describeError(err)}`, {
        level: 'error',
        migration: id,
      });
      return;
    }
    if (files.length === 0) return;
    const { removed, problems } = await removeLeftovers(files, id);
    for (const p of problems) log(`migration ${id}: ${p}`, { level: 'warn', migration: id });
    if (removed.length > 0) log(`migration ${id}: removed ${removed.join(', ')}`, { migration: id });
  }

  /** Before a block migration: what this host sees of each of the VM's disks (see viewDisks). */
  async checkDisks(body: unknown): Promise<DestinationDiskView[]> {
    return viewDisks(checkDiskCheckRequest(body), this.options.registry.instancesPath);
  }

  private track(
    id: string,
    vmName: string,
    owner: string,
    settings: MigrationSettings,
    qmp: QmpClient,
    postcopyStarted = false,
  ): IncomingMigration {
    const driver = new DestinationMigration({
      id,
      postcopyStarted,
      hostName: this.options.hostName,
      stream: settings,
      peerCommonName: owner,
      qmp,
      endpoints: this.endpoints,
      tlsCredsDir: this.options.qemuTlsDir,
      clock: this.clock,
      log: this.options.log,
      disks: (settings.disks ?? [])
        .filter((p) => p.action === 'copy')
        .map((p) => ({ nodeName: deviceIds('disk', p.disk).backend, exportName: `disk${p.disk}` })),
    });
    const entry: IncomingMigration = { id, vmName, owner, driver };
    this.active.set(id, entry);
    return entry;
  }

  /**
   * Post-copy switched over: run the guest here now. Journaled first, so that a
   * restart finds the guest it must keep; but the source cannot take the guest
   * back any more, so a journal that cannot take it does not stop the guest.
   */
  async resume(id: string, consoleTail?: ConsoleTail): Promise<void> {
    const entry = this.get(id);
    this.journalFirst(id, 'postcopy', { message: 'guest resumed on the destination (post-copy)' });
    if (consoleTail !== undefined) this.continueConsole(entry.vmName, consoleTail);
    await entry.driver.resume();
    await this.announce(entry.vmName);
    this.options.registry.setState(entry.vmName, 'running', id, 'eventually');
  }

  /** Journals a state the guest is about to be in; when the disk refuses, it is journaled later. */
  private journalFirst(id: string, state: 'postcopy' | 'completing', change: StateChange): void {
    try {
      this.options.journal.setMigrationState(id, state, change);
    } catch (err) {
      this.options.log(`migration ${id}: ${state} not journaled yet: ${describeError(err)}`, {
        level: 'error',
        migration: id,
      });
      this.journalLater(id, state, change);
    }
  }

  private journalLater(id: string, state: MigrationState, change: StateChange): void {
    this.options.backlog.later(`migration ${id} ${state}`, (j) => {
      const current = j.getMigration(id)?.state;
      if (current !== undefined && !isTerminalMigrationState(current)) j.setMigrationState(id, state, change);
    });
  }

  /** The source's console before the guest's first line here; a file that cannot be written is only logged. */
  private continueConsole(vmName: string, tail: ConsoleTail): void {
    try {
      this.options.registry.continueConsole(vmName, tail);
    } catch (err) {
      this.options.log(`VM ${vmName}: the source's console could not be kept: ${describeError(err)}`, {
        level: 'warn',
        vm: vmName,
      });
    }
  }

  /**
   * A migration nothing drives here any more (the agent restarted, or its task
   * ended unexpectedly), from its record and its QEMU (interruptedDestinationAction):
   * a guest that ran here is kept; in post-copy it waits for the source to finish;
   * a hand-over journaled but not started waits for the source to settle it; a copy
   * that never ran is dropped.
   */
  async takeUp(record: MigrationRecord, reason: string): Promise<void> {
    if (this.active.has(record.id)) return;
    const { registry, log } = this.options;
    const fields = { migration: record.id, vm: record.vm };
    const qmp = registry.qmpOf(record.vm);
    const qemu =
      qmp === undefined || !qmp.connected
        ? undefined
        : await Promise.all([
            qmp.execute<{ running: boolean }>('query-status'),
            qmp.execute<{ status?: string }>('query-migrate'),
          ]).then(
            ([s, m]) => ({ running: s.running, status: m.status ?? 'none' }),
            () => undefined,
          );
    switch (interruptedDestinationAction(record.state, qemu)) {
      case 'keep':
        registry.setState(record.vm, 'running', undefined, 'eventually');
        this.journalLater(record.id, 'completed', {
          message: `${reason}; the guest had started here: it runs here`,
        });
        log(`migration ${record.id}: ${record.vm} had started here before the restart; it runs here`, fields);
        return;
      case 'postcopy':
        this.track(record.id, record.vm, record.peer, record.plan, qmp as QmpClient, true);
        this.journalLater(record.id, 'postcopy', {
          message: `${reason}; post-copy: the guest runs here, waiting for the source to finish`,
        });
        log(`migration ${record.id}: post-copy in progress, the guest runs here; kept (${reason})`, fields);
        return;
      case 'await-source':
        this.track(record.id, record.vm, record.peer, record.plan, qmp as QmpClient);
        this.journalLater(record.id, 'completing', {
          message: `${reason}; the hand-over had begun: the paused copy waits for the source to settle it`,
        });
        log(`migration ${record.id}: hand-over begun before the restart; waiting for ${record.peer}`, fields);
        return;
      case 'drop':
      case 'gone': {
        const vm = registry.has(record.vm) ? registry.get(record.vm) : undefined;
        if (vm !== undefined && vm.state !== 'running') await registry.destroy(record.vm, 2000);
        // The images it made here go with it; a VM of that name that runs here keeps its disks.
        if (!registry.has(record.vm)) await this.removeImages(record.id);
        const error =
          qemu === undefined && record.state === 'postcopy'
            ? `${reason}; the guest QEMU died during post-copy`
            : reason;
        this.journalLater(record.id, 'failed', { message: error, error });
        log(`dropped incoming VM ${record.vm} of interrupted migration ${record.id} (${reason})`, fields);
      }
    }
  }

  /**
   * Only the source agent that prepared a migration may drive it here (resume,
   * recover, complete, abort, ask for its guest), known by its certificate name.
   * An id unknown here passes: the action itself answers that it does not exist.
   */
  authorize(id: string, peerCommonName: string): void {
    let owner = this.active.get(id)?.owner;
    if (owner === undefined) {
      const record = this.options.journal.getMigration(id);
      if (record?.role === 'destination') owner = record.peer;
    }
    if (owner !== undefined && owner !== peerCommonName) {
      throw new AuthError(`migration ${id} belongs to ${owner}; ${peerCommonName} may not drive it`);
    }
  }

  /** Post-copy lost its stream: listen again so the source can resume it. */
  async recover(id: string, peerCommonName: string): Promise<IncomingReply> {
    this.authorize(id, peerCommonName);
    const entry = this.get(id);
    const reply = await entry.driver.recover();
    // In post-copy: the guest needs its pages whether or not the disk takes this.
    this.journalLater(id, 'postcopy', {
      message: `post-copy stream broken: listening again for ${entry.owner} (recovery ${entry.driver.recoveryCount})`,
    });
    return reply;
  }

  /**
   * The source finished sending: check QEMU agrees and start the guest. A repeated
   * call (the source lost the first answer) gets the first call's outcome.
   */
  complete(id: string, consoleTail?: ConsoleTail): Promise<void> {
    const entry = this.get(id);
    if (entry.dropping === true && entry.completing === undefined) {
      return Promise.reject(new ConflictError(`migration ${id} is being dropped here: the source gave up`));
    }
    entry.completing ??= this.startGuest(entry, consoleTail);
    return entry.completing;
  }

  /**
   * Tells the network where the guest's NICs are now (QEMU sends gratuitous
   * RARPs from each): switches learn the new port at once instead of when the
   * guest next talks. A failure is logged: the guest runs either way.
   */
  private async announce(vmName: string): Promise<void> {
    const vm = this.options.registry.get(vmName);
    if (vm.spec.nics.length === 0) return;
    await vm
      .qemu!.qmp.execute('announce-self', { initial: 50, max: 550, rounds: 5, step: 100 })
      .catch((err: unknown) =>
        this.options.log(`VM ${vmName}: announce-self failed: ${describeError(err)}`, {
          level: 'warn',
          vm: vmName,
        }),
      );
  }

  /**
   * Starts the guest once QEMU has received everything. The hand-over is journaled
   * before the guest runs (`completing`), so a restart in between knows the guest
   * may run here and settles with the source instead of dropping it. Before
   * post-copy a journal that cannot take it fails the hand-over (the source resumes
   * its copy); after post-copy only this host can run the guest, so it runs anyway.
   */
  private async startGuest(entry: IncomingMigration, consoleTail?: ConsoleTail): Promise<void> {
    const { id } = entry;
    await failpoint('incoming.complete');
    await entry.driver.startGuest(() => {
      const change = { message: 'starting the guest here' };
      if (entry.driver.postcopyStarted) this.journalFirst(id, 'completing', change);
      else this.options.journal.setMigrationState(id, 'completing', change);
      if (consoleTail !== undefined) this.continueConsole(entry.vmName, consoleTail);
    });
    await failpoint('incoming.started');
    await this.announce(entry.vmName);
    this.active.delete(id);
    await entry.driver.closeTunnel();
    this.options.registry.setState(entry.vmName, 'running', undefined, 'eventually');
    this.journalLater(id, 'completed', { message: 'the VM runs here' });
    this.options.log(`migration ${id}: VM ${entry.vmName} now runs here`, {
      migration: id,
      vm: entry.vmName,
    });
  }

  /** The guest's own verdict after it arrived: its first heartbeats here (up to 20 s). */
  async guestHealth(id: string): Promise<GuestVerdict> {
    const record = this.options.journal.getMigration(id);
    if (record === undefined || record.role !== 'destination') {
      throw new NotFoundError(`no incoming migration ${id} on this host`);
    }
    // 'completing': the guest runs here and 'completed' waits for the disk.
    const runsHere =
      record.state === 'completed' ||
      record.state === 'postcopy' ||
      (record.state === 'completing' && !this.active.has(id) && this.options.registry.has(record.vm));
    if (!runsHere) throw new ConflictError(`migration ${id} is ${record.state}: the guest does not run here`);
    const health = await this.options.registry
      .get(record.vm)
      .guest.waitHealthy({ minOk: 3, timeoutMs: 20_000 });
    return { state: health.state, reason: health.reason };
  }

  /**
   * The source gave up: drop the incoming VM, unless the guest has already started
   * here (hand-over done, or post-copy): then it is kept and a ConflictError says so,
   * because the source must not resume its copy. Waits for a hand-over in progress,
   * so a lost complete() answer and this call cannot both win.
   */
  async abort(id: string, reason: string): Promise<void> {
    const entry = this.active.get(id);
    if (entry === undefined) {
      const record = this.options.journal.getMigration(id);
      if (record === undefined) throw new NotFoundError(`no incoming migration ${id} on this host`);
      if (['completed', 'completing', 'postcopy'].includes(record.state)) throw this.runsHere(id);
      return;
    }
    if (entry.completing !== undefined) await entry.completing.catch(() => undefined);
    if (!this.active.has(id)) return this.abort(id, reason);
    // No await between the check above and this: a complete() arriving from now on cannot start the guest.
    entry.dropping = true;
    if (await this.guestStarted(entry)) {
      entry.dropping = false;
      throw this.runsHere(id);
    }
    await this.fail(id, `source gave up: ${reason}`);
  }

  private runsHere(id: string): ConflictError {
    return new ConflictError(
      `migration ${id}: the guest already runs on ${this.options.hostName}; it is kept, not dropped`,
    );
  }

  /** Whether the incoming guest has run here, or only can from now on: post-copy started, or its QEMU runs. */
  private async guestStarted(entry: IncomingMigration): Promise<boolean> {
    if (entry.driver.postcopyStarted) return true;
    if (this.options.journal.getMigration(entry.id)?.state === 'postcopy') return true;
    return entry.driver.running();
  }

  /**
   * Asks the source agent about every incoming copy that has waited here longer
   * than orphanCheckMs without being started or dropped, and drops those it ended
   * or does not know (orphanVerdict): a source that gave up while it could not
   * reach this host never told it. Runs on a timer the agent starts.
   */
  async checkOrphans(now = Date.now()): Promise<void> {
    const { sourceApi, orphanCheckMs = 0 } = this.options;
    if (sourceApi === undefined || orphanCheckMs <= 0) return;
    for (const entry of [...this.active.values()]) {
      if (entry.sourceAddress === undefined || entry.completing !== undefined || entry.dropping === true)
        continue;
      if (now - (entry.preparedAt ?? now) < orphanCheckMs) continue;
      if (await this.guestStarted(entry)) continue;
      const source = sourceApi(entry.sourceAddress, entry.owner);
      let state: string;
      try {
        state = (await source.outgoingState(entry.id, { timeoutMs: 5000 })).state;
      } catch (err) {
        state = err instanceof NotFoundError ? 'unknown-there' : 'unreachable';
      } finally {
        source.close();
      }
      if (orphanVerdict(state) === 'keep' || !this.active.has(entry.id)) continue;
      const why =
        state === 'unknown-there'
          ? `${entry.owner} does not know this migration`
          : `${entry.owner} ended this migration (${state}) without telling this host`;
      await this.abort(entry.id, `${why}; nobody will finish this copy`).catch((err: unknown) => {
        this.options.log(`migration ${entry.id}: keeping the incoming copy: ${describeError(err)}`, {
          level: 'warn',
          migration: entry.id,
          vm: entry.vmName,
        });
      });
    }
  }

  /** Runs checkOrphans twice per orphanCheckMs until stopWatchingOrphans (nothing when it is 0). */
  watchOrphans(): void {
    const { orphanCheckMs = 0 } = this.options;
    if (orphanCheckMs <= 0 || this.orphanTimer !== undefined) return;
    this.orphanTimer = setInterval(
      () => {
        this.checkOrphans().catch((err: unknown) => {
          this.options.log(`checking incoming copies with their sources: ${describeError(err)}`);
        });
      },
      Math.max(1000, orphanCheckMs / 2),
    );
    this.orphanTimer.unref();
  }

  stopWatchingOrphans(): void {
    clearInterval(this.orphanTimer);
    this.orphanTimer = undefined;
  }

  private get(id: string): IncomingMigration {
    const entry = this.active.get(id);
    if (entry === undefined) throw new NotFoundError(`no incoming migration ${id} in progress on this host`);
    return entry;
  }

  /** Drops an incoming copy: its tunnel, its QEMU, and (when the disk allows) its record, failed. Never throws. */
  private async fail(id: string, reason: string, fallback?: IncomingMigration): Promise<void> {
    const entry = this.active.get(id) ?? fallback;
    this.active.delete(id);
    await entry?.driver.closeTunnel();
    const vmName = entry?.vmName ?? this.options.journal.getMigration(id)?.vm;
    if (vmName !== undefined && this.options.registry.has(vmName)) {
      const vm = this.options.registry.get(vmName);
      // Only the VM this migration brought: never one that already ran here under that name.
      if (vm.migrationId === id) await this.options.registry.destroy(vmName, 2000);
    }
    if (vmName === undefined || !this.options.registry.has(vmName)) await this.removeImages(id);
    this.journalLater(id, 'failed', { message: reason, error: reason });
    this.options.log(`incoming migration ${id} failed: ${reason}`, {
      level: 'warn',
      migration: id,
      vm: vmName,
    });
  }
}

/** A prepare request as it arrived: every field checked, a bad one named. */
function validateIncoming(body: unknown): IncomingRequest {
  if (typeof body !== 'object' || body === null)
    throw new UsageError('incoming request must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.migrationId !== 'string' || !/^[A-Za-z0-9-]{8,64}$/.test(b.migrationId)) {
    throw new UsageError(`invalid migrationId ${JSON.stringify(b.migrationId)}`);
  }
  return {
    migrationId: b.migrationId,
    spec: validateVmSpec(b.spec),
    settings: checkMigrationSettings(b.settings),
    sourceHost: typeof b.sourceHost === 'string' ? b.sourceHost : 'unknown',
    ...(typeof b.sourceQemuVersion === 'string' && /^\d+(\.\d+){0,3}$/.test(b.sourceQemuVersion)
      ? { sourceQemuVersion: b.sourceQemuVersion }
      : {}),
    ...(b.sourceAccelerator === 'kvm' || b.sourceAccelerator === 'tcg'
      ? { sourceAccelerator: b.sourceAccelerator }
      : {}),
    ...(typeof b.sourceAddress === 'string' && /^https:\/\/[^/]+$/.test(b.sourceAddress)
      ? { sourceAddress: b.sourceAddress }
      : {}),
    ...(typeof b.sourceInstancesPath === 'string' && isAbsolute(b.sourceInstancesPath)
      ? { sourceInstancesPath: b.sourceInstancesPath }
      : {}),
  };
}

/** A TCP port free on `host` now (for a block migration's NBD server, which cannot say which port it took). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}
