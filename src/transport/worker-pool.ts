import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism, setPriority } from 'node:os';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { HostSetupError, describeError } from '../errors.js';
import type { FromWorker, PemIdentity, ToWorker, WorkerEvent, WorkerStatsReply } from './ipc-protocol.js';
import { isFromWorker } from './ipc-protocol.js';
import { decideRelayWorkers } from '../policy/index.js';
import { resolveTuning, restartDelayMs, type RelayTuning } from './relay-tuning.js';
import { admitConnection, nextWorkerIndex, type TunnelRegistration } from './tunnel-policy.js';
import type { Role, TlsIdentity } from '../pki/index.js';

/** Something the transport reports for the agent's log, tagged with the worker it came from. */
export type TransportEvent =
  | (WorkerEvent & { worker: number; pid: number })
  /** The same events from a native relay process (native-relay.ts). */
  | (WorkerEvent & { relay: 'native'; pid: number })
  | { type: 'worker-started'; worker: number; pid: number }
  | { type: 'worker-exited'; worker: number; pid: number; code: number | null; signal: string | null }
  | { type: 'worker-warning'; worker: number; pid: number; message: string }
  | { type: 'connection-dropped'; reason: string };

export interface WorkerPoolOptions {
  tls: TlsIdentity;
  /** The agent's internal plain-HTTP API (unix socket); non-tunnel requests are proxied there. */
  internalApiPath?: string;
  /** The secret the internal API wants on every request (the agent's per-start secret). */
  internalApiSecret?: string;
  /** Roles whose certificates may open tunnels: the agent's route table (ROUTE_ROLES.tunnel). */
  tunnelRoles: readonly Role[];
  /** Connections the agent's port serves at once, shared out among the workers; unset: no limit. */
  maxConnections?: number;
  /** Worker processes; default: the policy's decideRelayWorkers (one per 2 CPUs). */
  workers?: number;
  tuning?: Partial<RelayTuning>;
  /** Receives refusals, handshake failures, worker restarts... for the agent's log. */
  onEvent?: (event: TransportEvent) => void;
  /** Node flags for the workers (default: none but --enable-source-maps). */
  execArgv?: string[];
  /** Environment of the workers; default this process's. */
  env?: NodeJS.ProcessEnv;
}

/** CPU time and relay counters of one worker process. */
export interface WorkerStats extends WorkerStatsReply {
  worker: number;
  restarts: number;
}

interface Slot {
  index: number;
  child: ChildProcess | undefined;
  ready: boolean;
  restarts: number;
  deaths: number[];
}

interface PendingRequest {
  resolve: (reply: FromWorker) => void;
}

const WORKER_SCRIPT = fileURLToPath(new URL('./relay-worker.js', import.meta.url));

function closeMessageFor(key: string): ToWorker {
  const name = key.slice(4);
  return key.startsWith('dst:')
    ? { type: 'close-tunnel', id: 0, migrationId: name }
    : { type: 'close-source', id: 0, tunnelId: name };
}

function pemIdentity(tls: TlsIdentity): PemIdentity {
  return {
    ca: tls.ca.toString('utf8'),
    cert: tls.cert.toString('utf8'),
    key: tls.key.toString('utf8'),
    ...(tls.crl !== undefined ? { crl: tls.crl.toString('utf8') } : {}),
  };
}

/**
 * The agent's transport worker processes. Connections are handed to them
 * round-robin with their file descriptors; tunnel registrations are sent to
 * all of them and replayed to a worker that is restarted after dying. One pool
 * serves both the agent's TLS port ({@link TlsFrontend}) and its source tunnels.
 */
export class WorkerPool {
  readonly size: number;
  readonly tuning: RelayTuning;
  private readonly slots: Slot[] = [];
  private identity: PemIdentity;
  private readonly internalApi: { path: string; secret: string } | undefined;
  private readonly tunnelRoles: readonly Role[];
  private readonly maxConnections: number | undefined;
  private readonly onEvent: (event: TransportEvent) => void;
  private readonly execArgv: string[];
  private readonly env: NodeJS.ProcessEnv;
  private readonly requests = new Map<number, PendingRequest>();
  /** Registrations every worker must hold, by key; replayed on restart. */
  private readonly replay = new Map<string, ToWorker>();
  private readonly destinationBudgets = new Map<string, { accepted: number; max: number }>();
  private readonly establishedListeners = new Map<string, (index: number, ok: boolean) => void>();
  private nextRequestId = 1;
  private cursor = -1;
  private closing = false;

  private constructor(options: WorkerPoolOptions) {
    this.size = decideRelayWorkers({ cpus: availableParallelism(), configured: options.workers }).value;
    this.tuning = resolveTuning(options.tuning);
    this.identity = pemIdentity(options.tls);
    this.internalApi =
      options.internalApiPath !== undefined
        ? { path: options.internalApiPath, secret: options.internalApiSecret ?? '' }
        : undefined;
    this.tunnelRoles = options.tunnelRoles;
    this.maxConnections = options.maxConnections;
    this.onEvent = options.onEvent ?? (() => undefined);
    this.execArgv = options.execArgv ?? ['--enable-source-maps'];
    this.env = options.env ?? process.env;
  }

  /** Forks the workers and resolves when all of them are ready. */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(options);
    for (let i = 0; i < pool.size; i++) {
      pool.slots.push({ index: i, child: undefined, ready: false, restarts: 0, deaths: [] });
    }
    try {
      await Promise.all(pool.slots.map((slot) => pool.spawn(slot)));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /**
   * Replaces the TLS identity (rotated certificate, new CRL) in every worker and for
   * workers started later. New connections use it; established ones keep theirs.
   */
  async reloadTls(tls: TlsIdentity): Promise<void> {
    this.identity = pemIdentity(tls);
    await this.broadcast({ type: 'reload-tls', id: 0, tls: this.identity });
  }

  /** The identity workers use for outgoing tunnel connections unless a tunnel brings its own. */
  get tlsIdentity(): PemIdentity {
    return this.identity;
  }

  /** Process ids of the live workers, by worker index (undefined while restarting). */
  get pids(): (number | undefined)[] {
    return this.slots.map((s) => (s.ready ? s.child?.pid : undefined));
  }

  /** Hands a connection to the next live worker; the descriptor leaves this process. */
  dispatch(message: ToWorker, socket: Socket): void {
    const index = nextWorkerIndex(
      this.cursor,
      this.slots.map((s) => s.ready && s.child?.connected === true),
    );
    const child = index >= 0 ? this.slots[index]?.child : undefined;
    if (child === undefined) {
      socket.destroy();
      this.onEvent({ type: 'connection-dropped', reason: 'no transport worker is running' });
      return;
    }
    this.cursor = index;
    child.send(message, socket, (err: Error | null) => {
      if (err !== null) {
        socket.destroy();
        this.onEvent({
          type: 'connection-dropped',
          reason: `handing a connection to a worker failed: ${err.message}`,
        });
      }
    });
  }

  /** Registers a destination tunnel in every worker. */
  async acceptTunnel(registration: TunnelRegistration): Promise<void> {
    this.destinationBudgets.set(registration.migrationId, { accepted: 0, max: registration.maxConnections });
    await this.register(`dst:${registration.migrationId}`, { type: 'accept-tunnel', id: 0, registration });
  }

  /** Unregisters a destination tunnel and destroys its connections in every worker. */
  async closeTunnel(migrationId: string): Promise<void> {
    this.destinationBudgets.delete(migrationId);
    await this.unregister(`dst:${migrationId}`, { type: 'close-tunnel', id: 0, migrationId });
  }

  /** @internal Used by SourceTunnel. */
  async registerSource(message: Extract<ToWorker, { type: 'register-source' }>): Promise<void> {
    await this.register(`src:${message.registration.tunnelId}`, message);
  }

  /** @internal Used by SourceTunnel. */
  async closeSource(tunnelId: string): Promise<void> {
    this.establishedListeners.delete(tunnelId);
    await this.unregister(`src:${tunnelId}`, { type: 'close-source', id: 0, tunnelId });
  }

  /** @internal Used by SourceTunnel: learns when its connections are established end to end. */
  onSourceEstablished(tunnelId: string, listener: (index: number, ok: boolean) => void): void {
    this.establishedListeners.set(tunnelId, listener);
  }

  /** CPU time and counters of every live worker. */
  async stats(): Promise<WorkerStats[]> {
    const replies = await Promise.all(
      this.slots.map(async (slot) => {
        const reply = await this.request(slot, { type: 'stats', id: 0 });
        return reply?.type === 'stats'
          ? { ...reply.stats, worker: slot.index, restarts: slot.restarts }
          : undefined;
      }),
    );
    return replies.filter((r): r is WorkerStats => r !== undefined);
  }

  /** Stops every worker (their connections die with them). */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.slots.map(async (slot) => {
        const child = slot.child;
        slot.ready = false;
        if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(timer);
      }),
    );
    for (const r of this.requests.values()) r.resolve({ type: 'ack', id: 0, error: 'worker pool closed' });
    this.requests.clear();
  }

  private async register(key: string, message: ToWorker): Promise<void> {
    this.replay.set(key, message);
    await this.broadcast(message);
  }

  private async unregister(key: string, message: ToWorker): Promise<void> {
    this.replay.delete(key);
    await this.broadcast(message);
  }

  private async broadcast(message: ToWorker): Promise<void> {
    const replies = await Promise.all(this.slots.filter((s) => s.ready).map((s) => this.request(s, message)));
    const failed = replies.find((r) => r?.type === 'ack' && r.error !== undefined);
    if (failed?.type === 'ack') throw new HostSetupError(`a transport worker failed: ${failed.error}`);
  }

  /** Sends a request to one worker; resolves with its reply, or undefined when the worker died first. */
  private request(slot: Slot, message: ToWorker): Promise<FromWorker | undefined> {
    const child = slot.child;
    if (child === undefined || !child.connected) return Promise.resolve(undefined);
    const id = this.nextRequestId++;
    return new Promise((resolve) => {
      const onExit = (): void => {
        this.requests.delete(id);
        resolve(undefined);
      };
      child.once('exit', onExit);
      this.requests.set(id, {
        resolve: (reply) => {
          child.off('exit', onExit);
          resolve(reply);
        },
      });
      child.send({ ...message, id }, (err: Error | null) => {
        if (err !== null) onExit();
      });
    });
  }

  private onMessage(slot: Slot, message: FromWorker): void {
    switch (message.type) {
      case 'ack':
      case 'stats': {
        const pending = this.requests.get(message.id);
        this.requests.delete(message.id);
        pending?.resolve(message);
        return;
      }
      case 'claim': {
        const budget = this.destinationBudgets.get(message.migrationId);
        const granted = budget !== undefined && admitConnection(budget.accepted, budget.max);
        if (granted) budget.accepted += 1;
        slot.child?.send(
          { type: 'claim-result', id: message.id, granted } satisfies ToWorker,
          () => undefined,
        );
        return;
      }
      case 'source-established':
        this.establishedListeners.get(message.tunnelId)?.(message.index, message.ok);
        return;
      case 'event':
        this.onEvent({ ...message.event, worker: slot.index, pid: slot.child?.pid ?? -1 });
        return;
    }
  }

  private async spawn(slot: Slot): Promise<void> {
    let child: ChildProcess;
    try {
      child = fork(WORKER_SCRIPT, [], {
        execArgv: this.execArgv,
        env: this.env,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        serialization: 'json',
      });
    } catch (err) {
      throw new HostSetupError(`cannot start a transport worker: ${describeError(err)}`, { cause: err });
    }
    slot.child = child;
    slot.ready = false;
    child.on('message', (message: unknown) => {
      if (isFromWorker(message)) this.onMessage(slot, message);
    });
    child.once('exit', (code, signal) => this.onExit(slot, child, code, signal));
    // A send to a worker that just died fails here rather than as an unhandled 'error'; its exit restarts it.
    child.on('error', () => undefined);
    const spawned = await new Promise<boolean>((resolve) => {
      child.once('spawn', () => resolve(true));
      child.once('error', () => resolve(false));
    });
    if (!spawned) throw new HostSetupError(`cannot start transport worker ${WORKER_SCRIPT}`);
    if (this.tuning.workerNice !== 0 && child.pid !== undefined) {
      try {
        setPriority(child.pid, this.tuning.workerNice);
      } catch (err) {
        this.onEvent({
          type: 'worker-warning',
          worker: slot.index,
          pid: child.pid,
          message: `cannot set priority ${this.tuning.workerNice}: ${describeError(err)}; running at the default`,
        });
      }
    }
    const init = await this.request(slot, {
      type: 'init',
      id: 0,
      index: slot.index,
      tls: this.identity,
      ...(this.internalApi !== undefined ? { internalApi: this.internalApi } : {}),
      tunnelRoles: this.tunnelRoles,
      ...(this.maxConnections !== undefined
        ? { maxConnections: Math.ceil(this.maxConnections / this.size) }
        : {}),
      tuning: this.tuning,
    });
    if (init?.type !== 'ack' || init.error !== undefined) {
      child.kill('SIGKILL');
      throw new HostSetupError(
        `transport worker ${slot.index} did not start: ${init?.type === 'ack' ? init.error : 'it exited'}`,
      );
    }
    const replayed: string[] = [];
    for (const [key, message] of this.replay) {
      replayed.push(key);
      await this.request(slot, message);
    }
    // A registration withdrawn while it was being replayed was not withdrawn from this worker.
    for (const key of replayed.filter((k) => !this.replay.has(k))) {
      await this.request(slot, closeMessageFor(key));
    }
    slot.ready = true;
    this.onEvent({ type: 'worker-started', worker: slot.index, pid: child.pid ?? -1 });
  }

  private onExit(slot: Slot, child: ChildProcess, code: number | null, signal: string | null): void {
    if (slot.child !== child) return;
    slot.ready = false;
    slot.child = undefined;
    this.onEvent({ type: 'worker-exited', worker: slot.index, pid: child.pid ?? -1, code, signal });
    if (this.closing) return;
    const now = Date.now();
    slot.deaths = [...slot.deaths.filter((t) => now - t < 60_000), now];
    slot.restarts += 1;
    const t = setTimeout(() => {
      if (this.closing) return;
      this.spawn(slot).catch((err: unknown) =>
        this.onEvent({
          type: 'connection-dropped',
          reason: `restarting worker ${slot.index} failed: ${describeError(err)}`,
        }),
      );
    }, restartDelayMs(slot.deaths.length));
    t.unref();
  }
}
