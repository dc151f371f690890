import { randomBytes } from 'node:crypto';
import {
  AuthError,
  ConflictError,
  MigrationError,
  NotFoundError,
  UsageError,
  describeError,
} from '../errors.js';
import type { GuestVerdict, IncomingReply, IncomingRequest } from '../migration/index.js';
import { failpoint } from '../failpoints.js';
import { checkAccelerators, checkChannels, preflightError } from '../policy/index.js';
import { validateVmSpec } from '../qemu/index.js';
import type { AgentClient } from './agent-client.js';
import type { ConsoleTail } from './console-log.js';
import type { Journal, MigrationRecord } from './journal.js';
import type { AgentTunnels } from './tunnels.js';
import type { VmRegistry } from './vm-registry.js';

interface IncomingMigration {
  id: string;
  vmName: string;
  sourceHost: string;
  transport: IncomingRequest['transport'];
  /** A tunnel was registered for it (to close when it ends). */
  tunnel: boolean;
  tunnelMode: IncomingRequest['tunnel'];
  /** The certificate name of the source agent that prepared it; only it may resume it. */
  peerCommonName: string;
  /** Post-copy recoveries so far (each listens on a fresh socket). */
  recoveries: number;
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
  stateDir: string;
  /** Address the destination QEMU listens on for native migration streams. */
  migrationAddress: string;
  registry: VmRegistry;
  journal: Journal;
  tunnels: AgentTunnels;
  qemuTlsDir: string | undefined;
  log: (line: string) => void;
  /** A client for the source agent at `address`, whose certificate must name `peerName`. */
  sourceClient?: (address: string, peerName: string) => AgentClient;
  /** How long an incoming copy may wait before the source is asked about it (ms); 0: never. */
  orphanCheckMs?: number;
}

/**
 * What to do with an incoming copy that was neither started nor dropped, from what
 * its source agent says of the migration: drop it when the source ended it without
 * the guest starting here, or never had it; keep it otherwise (in progress,
 * settling, or the source cannot be asked).
 */
export function orphanVerdict(sourceState: string): 'drop' | 'keep' {
  return ['failed', 'cancelled', 'unknown-there'].includes(sourceState) ? 'drop' : 'keep';
}

/**
 * The destination half of a migration: prepares an incoming QEMU for a source
 * agent, starts the guest when the source says the copy is complete, and drops
 * everything when the source gives up or the incoming QEMU dies.
 */
export class IncomingMigrations {
  private readonly active = new Map<string, IncomingMigration>();
  private orphanTimer: NodeJS.Timeout | undefined;
  private readonly options: IncomingMigrationsOptions;

  constructor(options: IncomingMigrationsOptions) {
    this.options = options;
  }

  async prepare(body: unknown, peerCommonName: string): Promise<IncomingReply> {
    const request = validateIncoming(body);
    if (request.sourceHost !== peerCommonName) {
      throw new AuthError(
        `a migration from ${request.sourceHost} must be asked for by that agent, not by ${peerCommonName}`,
      );
    }
    const { registry, journal } = this.options;
    if (request.sourceAccelerator !== undefined) {
      const refused = preflightError([
        checkAccelerators(
          { name: request.sourceHost, accelerator: request.sourceAccelerator },
          { name: this.options.hostName, accelerator: registry.accelerator },
        ),
      ]);
      if (refused !== undefined) throw refused;
    }
    if (this.active.has(request.migrationId))
      throw new ConflictError(`migration ${request.migrationId} is already prepared`);
    const spec = { ...request.spec, memoryBackend: { kind: 'ram' as const } };
    journal.createMigration({
      id: request.migrationId,
      vm: spec.name,
      role: 'destination',
      peer: request.sourceHost,
      transport: request.transport,
      // With the certificate name of the source agent: after a restart, only it may resume the migration.
      plan: { ...request, peerCommonName },
      state: 'preparing',
    });
    const entry: IncomingMigration = {
      id: request.migrationId,
      vmName: spec.name,
      sourceHost: request.sourceHost,
      transport: request.transport,
      tunnel: false,
      tunnelMode: request.tunnel,
      peerCommonName,
      recoveries: 0,
      ...(request.sourceAddress !== undefined ? { sourceAddress: request.sourceAddress } : {}),
      preparedAt: Date.now(),
    };
    try {
      const vm = await registry.prepareIncoming(spec, request.migrationId);
      this.active.set(entry.id, entry);
      const qmp = vm.qemu!.qmp;
      await qmp.execute('migrate-set-capabilities', {
        capabilities: [
          { capability: 'events', state: true },
          { capability: 'multifd', state: request.channels > 1 },
          { capability: 'postcopy-ram', state: request.postCopy },
        ],
      });
      let tlsCreds = '';
      if (request.transport === 'native' && request.tls) {
        if (this.options.qemuTlsDir === undefined) {
          throw new MigrationError(`host ${this.options.hostName} has no QEMU TLS credentials`, {
            hint: 'give the agent --qemu-tls-dir or let it lay out one from its certificate',
          });
        }
        tlsCreds = 'vmf-tls-in';
        await qmp.execute('object-add', {
          'qom-type': 'tls-creds-x509',
          id: tlsCreds,
          dir: this.options.qemuTlsDir,
          endpoint: 'server',
          'verify-peer': true,
        });
      }
      await qmp.execute('migrate-set-parameters', {
        'tls-creds': tlsCreds,
        ...(request.channels > 1 ? { 'multifd-channels': request.channels } : {}),
      });
      let reply: IncomingReply;
      if (request.transport === 'native') {
        await qmp.execute('migrate-incoming', { uri: `tcp:${this.options.migrationAddress}:0` });
        const port = await listeningPort(qmp);
        reply = {
          uri: `tcp:${this.options.migrationAddress}:${port}`,
          destinationHost: this.options.hostName,
        };
      } else {
        const targetPath = this.options.tunnels.incomingPath(request.migrationId);
        await qmp.execute('migrate-incoming', { uri: `unix:${targetPath}` });
        const token = randomBytes(32).toString('base64url');
        const { naivePort } = await this.options.tunnels.accept({
          migrationId: request.migrationId,
          token,
          peerCommonName,
          targetPath,
          channels: request.channels,
          mode: request.tunnel,
        });
        entry.tunnel = true;
        reply = {
          tunnelToken: token,
          destinationHost: this.options.hostName,
          ...(naivePort !== undefined ? { naivePort } : {}),
        };
      }
      journal.setMigrationState(entry.id, 'migrating', {
        message: `incoming QEMU waiting (${request.transport})`,
      });
      void vm.qemu!.exited.then(() => {
        if (this.active.has(entry.id))
          void this.fail(entry.id, 'the incoming QEMU exited before the migration completed');
      });
      return reply;
    } catch (err) {
      await this.fail(entry.id, `preparing failed: ${describeError(err)}`, entry);
      throw err;
    }
  }

  /** Post-copy switched over: run the guest here now. */
  async resume(id: string, consoleTail?: ConsoleTail): Promise<void> {
    const entry = this.get(id);
    const vm = this.options.registry.get(entry.vmName);
    if (consoleTail !== undefined) this.options.registry.continueConsole(entry.vmName, consoleTail);
    await vm.qemu!.qmp.execute('cont');
    await this.announce(entry.vmName);
    this.options.registry.setState(entry.vmName, 'running', id);
    this.options.journal.setMigrationState(id, 'postcopy', {
      message: 'guest resumed on the destination (post-copy)',
    });
  }

  /**
   * After a restart: a migration that was in post-copy here keeps going, because
   * the guest runs here and the source still holds pages it needs. Takes it back
   * as active so the source can recover its stream and complete it.
   */
  adopt(record: MigrationRecord): void {
    const request = validateIncoming(record.plan);
    if (!this.options.registry.has(record.vm)) {
      this.options.journal.setMigrationState(record.id, 'failed', {
        message: 'the agent restarted during post-copy and the guest QEMU is gone',
        error: 'the guest QEMU died during post-copy',
      });
      return;
    }
    this.active.set(record.id, {
      id: record.id,
      vmName: record.vm,
      sourceHost: request.sourceHost,
      transport: request.transport,
      tunnel: false,
      tunnelMode: request.tunnel,
      peerCommonName: ownerOf(record),
      recoveries: 0,
    });
    this.options.journal.setMigrationState(record.id, 'postcopy', {
      message: 'the agent restarted during post-copy; the guest runs here, waiting for the source to finish',
    });
    this.options.log(
      `migration ${record.id}: post-copy in progress, the guest runs here; kept after the restart`,
    );
  }

  /**
   * Only the source agent that prepared a migration may drive it here (resume,
   * recover, complete, abort, ask for its guest), known by its certificate name.
   * An id unknown here passes: the action itself answers that it does not exist.
   */
  authorize(id: string, peerCommonName: string): void {
    let owner = this.active.get(id)?.peerCommonName;
    if (owner === undefined) {
      const record = this.options.journal.getMigration(id);
      if (record?.role === 'destination') owner = ownerOf(record);
    }
    if (owner !== undefined && owner !== peerCommonName) {
      throw new AuthError(`migration ${id} belongs to ${owner}; ${peerCommonName} may not drive it`);
    }
  }

  /**
   * Post-copy lost its stream (both QEMUs paused in post-copy, the guest here
   * waiting for pages): listen again so the source can resume it (QEMU's
   * migrate-recover), over a fresh socket and, tunnelled, a fresh token.
   */
  async recover(id: string, peerCommonName: string): Promise<IncomingReply> {
    this.authorize(id, peerCommonName);
    const entry = this.get(id);
    const qmp = this.options.registry.get(entry.vmName).qemu!.qmp;
    const status = (await qmp.execute<{ status?: string }>('query-migrate')).status ?? 'unknown';
    if (status !== 'postcopy-paused') {
      throw new ConflictError(
        `migration ${id} is ${status} here, not paused in post-copy: nothing to recover`,
      );
    }
    entry.recoveries += 1;
    const destinationHost = this.options.hostName;
    this.options.journal.setMigrationState(id, 'postcopy', {
      message: `post-copy stream broken: listening again for ${entry.peerCommonName} (recovery ${entry.recoveries})`,
    });
    if (entry.transport === 'native') {
      await qmp.execute('migrate-recover', { uri: `tcp:${this.options.migrationAddress}:0` });
      return { uri: `tcp:${this.options.migrationAddress}:${await listeningPort(qmp)}`, destinationHost };
    }
    if (entry.tunnel) await this.closeTunnel(id);
    entry.tunnel = false;
    const targetPath = `${this.options.tunnels.incomingPath(id)}.r${entry.recoveries}`;
    await qmp.execute('migrate-recover', { uri: `unix:${targetPath}` });
    const token = randomBytes(32).toString('base64url');
    const { naivePort } = await this.options.tunnels.accept({
      migrationId: id,
      token,
      peerCommonName,
      targetPath,
      channels: 1,
      mode: entry.tunnelMode,
    });
    entry.tunnel = true;
    return { tunnelToken: token, destinationHost, ...(naivePort !== undefined ? { naivePort } : {}) };
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
      .catch((err: unknown) => this.options.log(`VM ${vmName}: announce-self failed: ${describeError(err)}`));
  }

  private async startGuest(entry: IncomingMigration, consoleTail?: ConsoleTail): Promise<void> {
    const { id } = entry;
    const { registry, journal } = this.options;
    await failpoint('incoming.complete');
    const vm = registry.get(entry.vmName);
    const qmp = vm.qemu!.qmp;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const info = await qmp.execute<{ status?: string }>('query-migrate');
      if (info.status === 'completed') break;
      if (info.status === 'failed' || Date.now() > deadline) {
        throw new MigrationError(
          `the destination QEMU reports the incoming migration as ${info.status ?? 'unknown'}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const status = await qmp.execute<{ running: boolean }>('query-status');
    if (consoleTail !== undefined && !status.running) registry.continueConsole(entry.vmName, consoleTail);
    if (!status.running) await qmp.execute('cont');
    await this.announce(entry.vmName);
    this.active.delete(id);
    if (entry.tunnel) await this.closeTunnel(id);
    registry.setState(entry.vmName, 'running');
    journal.setMigrationState(id, 'completed', { message: 'the VM runs here' });
    this.options.log(`migration ${id}: VM ${entry.vmName} now runs here`);
  }

  /** The guest's own verdict after it arrived: its first heartbeats here (up to 20 s). */
  async guestHealth(id: string): Promise<GuestVerdict> {
    const record = this.options.journal.getMigration(id);
    if (record === undefined || record.role !== 'destination') {
      throw new NotFoundError(`no incoming migration ${id} on this host`);
    }
    if (record.state !== 'completed' && record.state !== 'postcopy') {
      throw new ConflictError(`migration ${id} is ${record.state}: the guest does not run here`);
    }
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
      if (record.state === 'completed' || record.state === 'postcopy') throw this.runsHere(id);
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

  /** Whether the incoming guest has run here: post-copy resumed it, or its QEMU is running. */
  private async guestStarted(entry: IncomingMigration): Promise<boolean> {
    if (this.options.journal.getMigration(entry.id)?.state === 'postcopy') return true;
    const qmp = this.options.registry.qmpOf(entry.vmName);
    if (qmp === undefined || !qmp.connected) return false;
    const status = await qmp.execute<{ running: boolean }>('query-status').catch(() => ({ running: false }));
    return status.running;
  }

  /**
   * Asks the source agent about every incoming copy that has waited here longer
   * than orphanCheckMs without being started or dropped, and drops those it ended
   * or does not know (orphanVerdict): a source that gave up while it could not
   * reach this host never told it. Runs on a timer the agent starts.
   */
  async checkOrphans(now = Date.now()): Promise<void> {
    const { sourceClient, orphanCheckMs = 0 } = this.options;
    if (sourceClient === undefined || orphanCheckMs <= 0) return;
    for (const entry of [...this.active.values()]) {
      if (entry.sourceAddress === undefined || entry.completing !== undefined || entry.dropping === true)
        continue;
      if (now - (entry.preparedAt ?? now) < orphanCheckMs) continue;
      if (await this.guestStarted(entry)) continue;
      const client = sourceClient(entry.sourceAddress, entry.peerCommonName);
      let state: string;
      try {
        state = (await client.get<{ state: string }>(`/v1/migrations/${entry.id}`, { timeoutMs: 5000 }))
          .state;
      } catch (err) {
        state = err instanceof NotFoundError ? 'unknown-there' : 'unreachable';
      } finally {
        client.close();
      }
      if (orphanVerdict(state) === 'keep' || !this.active.has(entry.id)) continue;
      const why =
        state === 'unknown-there'
          ? `${entry.peerCommonName} does not know this migration`
          : `${entry.peerCommonName} ended this migration (${state}) without telling this host`;
      await this.abort(entry.id, `${why}; nobody will finish this copy`).catch((err: unknown) => {
        this.options.log(`migration ${entry.id}: keeping the incoming copy: ${describeError(err)}`);
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

  /** At start-up: incoming VMs left by a previous agent process cannot be trusted; drop them. */
  async dropLeftovers(migrationIds: readonly { id: string; vm: string }[]): Promise<void> {
    for (const m of migrationIds) {
      if (this.options.registry.has(m.vm) && this.options.registry.get(m.vm).state === 'incoming') {
        await this.options.registry.destroy(m.vm, 2000);
        this.options.log(`dropped incoming VM ${m.vm} of interrupted migration ${m.id}`);
      }
    }
  }

  private async closeTunnel(id: string): Promise<void> {
    await this.options.tunnels.close(id).catch((err: unknown) => {
      this.options.log(`closing the tunnel of migration ${id}: ${describeError(err)}`);
    });
  }

  private get(id: string): IncomingMigration {
    const entry = this.active.get(id);
    if (entry === undefined) throw new NotFoundError(`no incoming migration ${id} in progress on this host`);
    return entry;
  }

  private async fail(id: string, reason: string, fallback?: IncomingMigration): Promise<void> {
    const entry = this.active.get(id) ?? fallback;
    this.active.delete(id);
    if (entry?.tunnel === true) await this.closeTunnel(id);
    if (entry !== undefined && this.options.registry.has(entry.vmName)) {
      const vm = this.options.registry.get(entry.vmName);
      // Only the VM this migration brought: never one that already ran here under that name.
      if (vm.migrationId === id) await this.options.registry.destroy(entry.vmName, 2000);
    }
    this.options.journal.setMigrationState(id, 'failed', { message: reason, error: reason });
    this.options.log(`incoming migration ${id} failed: ${reason}`);
  }
}

/**
 * The certificate name of the source agent that prepared an incoming migration, as
 * prepare() journals it with the request (older records: the source host it named).
 */
function ownerOf(record: MigrationRecord): string {
  return (record.plan as { peerCommonName?: string } | null)?.peerCommonName ?? record.peer;
}

/** The port QEMU listens on for the stream: the newest inet address (migrate-recover adds one). */
async function listeningPort(qmp: { execute<T>(c: string): Promise<T> }): Promise<number> {
  const info = await qmp.execute<{ 'socket-address'?: { type: string; port?: string }[] }>('query-migrate');
  const port = Number(info['socket-address']?.filter((a) => a.type === 'inet').at(-1)?.port);
  if (!Number.isInteger(port) || port <= 0)
    throw new MigrationError('the destination QEMU did not report its listening port');
  return port;
}

function validateIncoming(body: unknown): IncomingRequest {
  if (typeof body !== 'object' || body === null)
    throw new UsageError('incoming request must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.migrationId !== 'string' || !/^[A-Za-z0-9-]{8,64}$/.test(b.migrationId)) {
    throw new UsageError(`invalid migrationId ${JSON.stringify(b.migrationId)}`);
  }
  if (b.transport !== 'native' && b.transport !== 'tunnelled') {
    throw new UsageError(`transport must be native or tunnelled, got ${JSON.stringify(b.transport)}`);
  }
  const channels = checkChannels(b.channels);
  if (b.tunnel !== undefined && b.tunnel !== 'multi' && b.tunnel !== 'naive') {
    throw new UsageError(`tunnel must be multi or naive, got ${JSON.stringify(b.tunnel)}`);
  }
  return {
    migrationId: b.migrationId,
    tunnel: b.tunnel === 'naive' ? 'naive' : 'multi',
    spec: validateVmSpec(b.spec),
    transport: b.transport,
    tls: b.tls === true,
    channels,
    postCopy: b.postCopy === true,
    sourceHost: typeof b.sourceHost === 'string' ? b.sourceHost : 'unknown',
    ...(b.sourceAccelerator === 'kvm' || b.sourceAccelerator === 'tcg'
      ? { sourceAccelerator: b.sourceAccelerator }
      : {}),
    ...(typeof b.sourceAddress === 'string' && /^https:\/\/[^/]+$/.test(b.sourceAddress)
      ? { sourceAddress: b.sourceAddress }
      : {}),
  };
}
