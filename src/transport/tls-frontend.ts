import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { UsageError } from '../errors.js';
import {
  SourceTunnel,
  closeServer,
  destinationStats,
  type SourceTunnelOptions,
  type TunnelStats,
} from './source-tunnel.js';
import type { TlsIdentity } from '../pki/index.js';
import { listenPrivate } from './private-socket.js';
import { validateRegistration, type TunnelRegistration } from './tunnel-policy.js';
import { WorkerPool, type TransportEvent, type WorkerPoolOptions, type WorkerStats } from './worker-pool.js';

export interface TlsFrontendOptions extends Omit<WorkerPoolOptions, 'internalApiPath'> {
  /** The agent's public port (mutual TLS). Port 0 picks a free one; see {@link TlsFrontend.address}. */
  listen?: { host: string; port: number };
  /** A local unix socket with the same mutual TLS, for the CLI on this host. */
  localPath?: string;
  /** The agent's internal plain-HTTP API on a unix socket; every non-tunnel request is proxied there. */
  internalApiPath: string;
}

/** A destination tunnel the agent has prepared for one migration. */
export type AcceptTunnelOptions = TunnelRegistration;

/**
 * The agent's front door: one TLS port (and optionally a local socket) whose
 * connections are accepted here without being read and handed, descriptor and
 * all, to the worker processes of a {@link WorkerPool}, which terminate the
 * mutual TLS, relay tunnels and proxy API requests. The same pool opens the
 * agent's source tunnels ({@link TlsFrontend.openSourceTunnel}).
 */
export class TlsFrontend {
  readonly pool: WorkerPool;
  private readonly servers: Server[] = [];
  private tcpAddress: { host: string; port: number } | undefined;
  private local: string | undefined;

  private readonly onEvent: (event: TransportEvent) => void;

  private constructor(pool: WorkerPool, onEvent: (event: TransportEvent) => void) {
    this.pool = pool;
    this.onEvent = onEvent;
  }

  /** New TLS identity (rotated certificate, new CRL) for new connections; see WorkerPool.reloadTls. */
  reloadTls(tls: TlsIdentity): Promise<void> {
    return this.pool.reloadTls(tls);
  }

  static async start(options: TlsFrontendOptions): Promise<TlsFrontend> {
    if (options.listen === undefined && options.localPath === undefined) {
      throw new UsageError('the TLS frontend needs a listen address, a local socket path, or both');
    }
    if (!options.internalApiPath.startsWith('/')) {
      throw new UsageError(
        `internalApiPath must be an absolute unix socket path, got ${options.internalApiPath}`,
      );
    }
    const pool = await WorkerPool.start(options);
    const frontend = new TlsFrontend(pool, options.onEvent ?? (() => undefined));
    try {
      if (options.listen !== undefined) {
        const server = await frontend.listenOn(options.listen);
        const addr = server.address() as AddressInfo;
        frontend.tcpAddress = { host: addr.address, port: addr.port };
      }
      if (options.localPath !== undefined) {
        await frontend.listenOn({ path: options.localPath });
        frontend.local = options.localPath;
      }
    } catch (err) {
      await frontend.close();
      throw err;
    }
    return frontend;
  }

  /** The bound TCP address (with the real port when 0 was asked for). */
  get address(): { host: string; port: number } | undefined {
    return this.tcpAddress;
  }

  get localPath(): string | undefined {
    return this.local;
  }

  /**
   * Lets the peer agent `peerCommonName` open up to `maxConnections` tunnel
   * connections for this migration, with `token`; each is relayed to the
   * destination QEMU's `migrate-incoming unix:<targetPath>` socket. Resolves
   * once every worker knows it.
   */
  async acceptTunnel(options: AcceptTunnelOptions): Promise<void> {
    const registration = validateRegistration({ ...options });
    await this.pool.acceptTunnel(registration);
  }

  /** Forgets the tunnel and destroys its connections in every worker; returns its final counters. */
  async closeTunnel(migrationId: string): Promise<TunnelStats> {
    const final = await destinationStats(this.pool, migrationId);
    await this.pool.closeTunnel(migrationId);
    return final;
  }

  /** Bytes relayed so far by a destination tunnel. */
  tunnelStats(migrationId: string): Promise<TunnelStats> {
    return destinationStats(this.pool, migrationId);
  }

  /** Opens a source tunnel on this frontend's worker pool. */
  openSourceTunnel(options: Omit<SourceTunnelOptions, 'workers'>): Promise<SourceTunnel> {
    return SourceTunnel.open({ ...options, workers: this.pool });
  }

  /** CPU time and bytes relayed, per worker process. */
  stats(): Promise<WorkerStats[]> {
    return this.pool.stats();
  }

  /** Stops listening and stops the workers (with every connection they hold). */
  async close(): Promise<void> {
    const stopping = this.servers.map((s) => closeServer(s, 1000));
    await this.pool.close();
    await Promise.all(stopping);
    this.servers.length = 0;
  }

  private async listenOn(target: { host: string; port: number } | { path: string }): Promise<Server> {
    const server = createServer({ pauseOnConnect: true }, (socket: Socket) =>
      this.pool.dispatch({ type: 'frontend-connection' }, socket),
    );
    this.servers.push(server);
    if ('path' in target) {
      // The local socket is the operator's on this host: owner-only, like the TLS key it stands beside.
      await listenPrivate(server, target.path);
    } else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(target.port, target.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    }
    // After listening, errors are failed accepts (EMFILE...): the listener keeps going.
    server.on('error', (err) =>
      this.onEvent({ type: 'connection-dropped', reason: `accept failed: ${err.message}` }),
    );
    return server;
  }
}
