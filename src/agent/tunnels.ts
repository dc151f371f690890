import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { MigrationError, PeerError, UsageError } from '../errors.js';
import type { TransportSession } from '../migration/index.js';
import type { TunnelMode } from '../policy/index.js';
import type { TlsIdentity } from '../pki/index.js';
import { NaiveTunnel, type TlsFrontend } from '../transport/index.js';
import type { AgentClient } from './agent-client.js';
import type { QemuUser } from './qemu-user.js';
import { ROUTE_ROLES } from './route-access.js';

/**
 * The agent's two tunnel ends. `multi` is the product: every QEMU connection
 * (main + multifd channels) relayed by the front door's worker processes over
 * its own TLS connection, through the agent's one port. `naive` is the design
 * the 2016 mail complains about — one connection, one thread, in this process,
 * on a port of its own — kept only as the benchmark's baseline.
 */
export class AgentTunnels {
  private readonly naive = new Map<string, NaiveTunnel>();

  constructor(
    private readonly frontend: () => TlsFrontend,
    private readonly options: {
      stateDir: string;
      tls: TlsIdentity;
      listenHost: string;
      /** QEMU's user: the source socket is given to it (QEMU connects as that user). */
      qemuUser?: QemuUser;
    },
  ) {}

  /** The identity the naive tunnel uses from now on (after a reload). */
  setTls(tls: TlsIdentity): void {
    this.options.tls = tls;
  }

  private socketPath(migrationId: string, end: 'in' | 'out' | 'disks-in' | 'disks-out'): string {
    const dir = join(this.options.stateDir, 'tunnels');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return join(dir, `${migrationId.slice(0, 12)}-${end}.sock`);
  }

  private socketOwner(): { socketOwner?: { uid: number; gid: number } } {
    const user = this.options.qemuUser;
    return user === undefined ? {} : { socketOwner: { uid: user.uid, gid: user.gid } };
  }

  /** Where the destination QEMU listens (`migrate-incoming unix:...`). */
  incomingPath(migrationId: string): string {
    return this.socketPath(migrationId, 'in');
  }

  /** Where the destination QEMU's NBD server listens behind the tunnel (block migration). */
  incomingDisksPath(migrationId: string): string {
    return this.socketPath(migrationId, 'disks-in');
  }

  /**
   * Destination, block migration: the source's disk connections come through the
   * tunnel too, as a second registration with the same token and peer, relayed
   * to the NBD server's socket (one connection per copied disk). Always through
   * the front door's relay, also when the stream itself uses the naive baseline.
   */
  async acceptDisks(t: {
    migrationId: string;
    token: string;
    peerCommonName: string;
    targetPath: string;
    disks: number;
  }): Promise<void> {
    await this.frontend().acceptTunnel({
      migrationId: disksTunnelId(t.migrationId),
      token: t.token,
      peerCommonName: t.peerCommonName,
      targetPath: t.targetPath,
      maxConnections: t.disks,
    });
  }

  /** Source, block migration: a local socket for QEMU's NBD client, relayed to the destination's NBD server. */
  async openDisks(t: {
    migrationId: string;
    token: string;
    destination: AgentClient;
    destinationHost: string;
  }): Promise<{ path: string; close: () => Promise<void> }> {
    const { endpoint } = t.destination;
    if (endpoint.host === undefined || endpoint.port === undefined) {
      throw new UsageError(`a tunnel needs the destination agent's TCP address, not ${endpoint.url}`);
    }
    const listenPath = this.socketPath(t.migrationId, 'disks-out');
    const tunnel = await this.frontend().openSourceTunnel({
      migrationId: disksTunnelId(t.migrationId),
      token: t.token,
      listenPath,
      remote: { host: endpoint.host, port: endpoint.port },
      expectedPeerCommonName: t.destinationHost,
      ...this.socketOwner(),
    });
    return { path: listenPath, close: async () => void (await tunnel.close()) };
  }

  /** Destination: accepts tunnel connections for this migration from `peerCommonName` with `token`; returns the naive port if any. */
  async accept(t: {
    migrationId: string;
    token: string;
    peerCommonName: string;
    targetPath: string;
    channels: number;
    mode: TunnelMode;
  }): Promise<{ naivePort?: number }> {
    const registration = {
      migrationId: t.migrationId,
      token: t.token,
      peerCommonName: t.peerCommonName,
      targetPath: t.targetPath,
      // QEMU opens the main channel plus one per multifd channel.
      maxConnections: t.channels + 1,
    };
    if (t.mode === 'naive') {
      const tunnel = await NaiveTunnel.listenDestination({
        listen: { host: this.options.listenHost, port: 0 },
        tls: this.options.tls,
        registration,
        tunnelRoles: ROUTE_ROLES.tunnel,
      });
      this.naive.set(t.migrationId, tunnel);
      const port = tunnel.address?.port;
      if (port === undefined) throw new MigrationError('the naive tunnel did not bind a port');
      return { naivePort: port };
    }
    await this.frontend().acceptTunnel(registration);
    return {};
  }

  /** Destination: forgets the tunnel (and a block migration's disk tunnel) and drops their connections. */
  async close(migrationId: string): Promise<void> {
    await this.frontend().closeTunnel(disksTunnelId(migrationId));
    const naive = this.naive.get(migrationId);
    if (naive !== undefined) {
      this.naive.delete(migrationId);
      await naive.close();
      return;
    }
    await this.frontend().closeTunnel(migrationId);
  }

  /** Source: a local socket for QEMU, relayed to the destination agent. */
  async open(t: {
    migrationId: string;
    token: string;
    destination: AgentClient;
    destinationHost: string;
    mode: TunnelMode;
    naivePort?: number;
  }): Promise<TransportSession> {
    const { endpoint } = t.destination;
    if (endpoint.host === undefined || endpoint.port === undefined) {
      throw new UsageError(`a tunnel needs the destination agent's TCP address, not ${endpoint.url}`);
    }
    const listenPath = this.socketPath(t.migrationId, 'out');
    if (t.mode === 'naive') {
      if (t.naivePort === undefined) throw new PeerError('the destination did not open a naive tunnel port');
      const tunnel = await NaiveTunnel.openSource({
        listenPath,
        remote: { host: endpoint.host, port: t.naivePort },
        tls: this.options.tls,
        migrationId: t.migrationId,
        token: t.token,
        expectedPeerCommonName: t.destinationHost,
        ...this.socketOwner(),
      });
      return { uri: `unix:${listenPath}`, close: async () => void (await tunnel.close()) };
    }
    const tunnel = await this.frontend().openSourceTunnel({
      migrationId: t.migrationId,
      token: t.token,
      listenPath,
      remote: { host: endpoint.host, port: endpoint.port },
      expectedPeerCommonName: t.destinationHost,
      ...this.socketOwner(),
    });
    return { uri: `unix:${listenPath}`, close: async () => void (await tunnel.close()) };
  }
}

/** The disk tunnel's registration id: the migration's, marked (the tunnel path allows dots). */
function disksTunnelId(migrationId: string): string {
  return `${migrationId}.disks`;
}
