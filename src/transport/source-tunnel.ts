import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { listenPrivate, type SocketOwner } from './private-socket.js';
import { createServer, type Server, type Socket } from 'node:net';
import type { TunnelCounters, TunnelRemote } from './ipc-protocol.js';
import { validateSourceTunnel } from './tunnel-policy.js';
import type { TlsIdentity } from '../pki/index.js';
import type { WorkerPool } from './worker-pool.js';

export type { TunnelRemote } from './ipc-protocol.js';

/** Byte counters of one tunnel, summed over all workers. */
export interface TunnelStats extends TunnelCounters {
  migrationId: string;
}

export interface SourceTunnelOptions {
  migrationId: string;
  /** The token the destination agent was given in acceptTunnel. */
  token: string;
  /** Unix socket the source QEMU migrates to (`migrate unix:<listenPath>`). */
  listenPath: string;
  /** Who the socket file is given to: QEMU's user, when the agent runs QEMU as another user. */
  socketOwner?: SocketOwner;
  /** The destination agent's TLS port (or its local socket). */
  remote: TunnelRemote;
  /** The CN the destination agent's certificate must carry. */
  expectedPeerCommonName: string;
  /** Identity for the outgoing connections; default: the pool's. */
  tls?: TlsIdentity;
  /** The agent's worker pool (the one its TlsFrontend uses). */
  workers: WorkerPool;
}

function sumCounters(migrationId: string, all: (TunnelCounters | undefined)[]): TunnelStats {
  const out: TunnelStats = {
    migrationId,
    connectionsOpened: 0,
    connectionsOpen: 0,
    bytesFromQemu: 0,
    bytesToQemu: 0,
  };
  for (const c of all) {
    if (c === undefined) continue;
    out.connectionsOpened += c.connectionsOpened;
    out.connectionsOpen += c.connectionsOpen;
    out.bytesFromQemu += c.bytesFromQemu;
    out.bytesToQemu += c.bytesToQemu;
  }
  return out;
}

/** @internal Sums a destination tunnel's counters over the pool's workers. */
export async function destinationStats(pool: WorkerPool, migrationId: string): Promise<TunnelStats> {
  const stats = await pool.stats();
  return sumCounters(
    migrationId,
    stats.map((s) => s.destinations[migrationId]),
  );
}

/** Closes a listener; resolves at the latest after `timeoutMs` even if a worker never reports back. */
export function closeServer(server: Server, timeoutMs = 3000): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * The source end of a tunnel: a unix socket the source QEMU migrates to. Each
 * connection QEMU opens (with multifd: the main channel, then one per channel)
 * goes to a worker, which opens its own TLS connection to the destination
 * agent. The first connection is relayed end to end before the others are
 * handed on, because QEMU before 8.0 takes the first connection it accepts as
 * the main migration channel.
 */
export class SourceTunnel {
  readonly migrationId: string;
  readonly listenPath: string;
  /** Unique per tunnel, so the same migration can be retried with a fresh tunnel. */
  readonly tunnelId: string;
  private readonly pool: WorkerPool;
  private readonly server: Server;
  private nextIndex = 0;
  private firstSettled = false;
  private readonly held: { socket: Socket; index: number }[] = [];
  private closedStats: TunnelStats | undefined;

  private constructor(options: SourceTunnelOptions, server: Server) {
    this.migrationId = options.migrationId;
    this.listenPath = options.listenPath;
    this.pool = options.workers;
    this.server = server;
    this.tunnelId = `${options.migrationId}.${randomBytes(6).toString('hex')}`;
  }

  static async open(options: SourceTunnelOptions): Promise<SourceTunnel> {
    validateSourceTunnel(options);
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
    const tunnel = new SourceTunnel(options, server);
    const { tls } = options;
    await tunnel.pool.registerSource({
      type: 'register-source',
      id: 0,
      registration: {
        tunnelId: tunnel.tunnelId,
        migrationId: options.migrationId,
        token: options.token,
        remote: options.remote,
        expectedPeerCommonName: options.expectedPeerCommonName,
        ...(tls !== undefined
          ? { tls: { ca: tls.ca.toString(), cert: tls.cert.toString(), key: tls.key.toString() } }
          : {}),
      },
    });
    tunnel.pool.onSourceEstablished(tunnel.tunnelId, (index) => {
      if (index === 0) tunnel.releaseHeld();
    });
    server.on('connection', (socket: Socket) => tunnel.onConnection(socket));
    try {
      await listenPrivate(server, options.listenPath, options.socketOwner);
      // Later errors are failed accepts; QEMU sees its connect fail, the listener keeps going.
      server.on('error', () => undefined);
    } catch (err) {
      await tunnel.pool.closeSource(tunnel.tunnelId);
      throw err;
    }
    return tunnel;
  }

  /** Bytes relayed so far, summed over the workers. */
  async stats(): Promise<TunnelStats> {
    if (this.closedStats !== undefined) return this.closedStats;
    const stats = await this.pool.stats();
    return sumCounters(
      this.migrationId,
      stats.map((s) => s.sources[this.tunnelId]),
    );
  }

  /** Stops listening, destroys every connection of this tunnel, removes the socket file; returns the final counters. */
  async close(): Promise<TunnelStats> {
    if (this.closedStats !== undefined) return this.closedStats;
    const final = await this.stats();
    this.closedStats = final;
    for (const h of this.held.splice(0)) h.socket.destroy();
    // A server whose sockets went to workers closes only when the workers report them closed: destroy them first.
    const stopped = closeServer(this.server);
    await this.pool.closeSource(this.tunnelId);
    await stopped;
    try {
      unlinkSync(this.listenPath);
    } catch {
      // already removed with the listener
    }
    return final;
  }

  private onConnection(socket: Socket): void {
    const index = this.nextIndex++;
    if (index === 0 || this.firstSettled) this.hand(socket, index);
    else this.held.push({ socket, index });
  }

  private releaseHeld(): void {
    this.firstSettled = true;
    for (const h of this.held.splice(0)) this.hand(h.socket, h.index);
  }

  private hand(socket: Socket, index: number): void {
    this.pool.dispatch({ type: 'source-connection', tunnelId: this.tunnelId, index }, socket);
  }
}

/** Opens the source end of a tunnel on the agent's worker pool. See {@link SourceTunnel}. */
export function openSourceTunnel(options: SourceTunnelOptions): Promise<SourceTunnel> {
  return SourceTunnel.open(options);
}
