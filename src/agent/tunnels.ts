import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { MigrationError, PeerError, UsageError, describeError } from '../errors.js';
import type { TransportSession, TunnelAcceptance } from '../migration/index.js';
import type { TunnelMode } from '../policy/index.js';
import type { Role, TlsIdentity } from '../pki/index.js';
import type { TunnelRelayKind } from '../qemu/index.js';
import {
  NaiveTunnel,
  NativeRelay,
  type TlsFrontend,
  type TransportEvent,
  type WorkerEvent,
} from '../transport/index.js';
import type { AgentClient } from './agent-client.js';
import type { QemuUser } from './qemu-user.js';
import { ROUTE_ROLES } from './route-access.js';

/**
 * The agent's two tunnel ends. `multi` is the product: every QEMU connection
 * (main + multifd channels) relayed over its own TLS connection, by the front
 * door's worker processes through the agent's one port, or with the native relay
 * (`relay: 'native'`) by a native/vmferry-relay process per migration and end, the
 * destination's on a port of its own (`relayPort` in the prepare reply). Both speak
 * the same protocol, so either end works with either relay on the other. `naive`
 * is the design the 2016 mail complains about — one connection, one thread, in
 * this process, on a port of its own — kept only as the benchmark's baseline.
 */
export class AgentTunnels {
  private readonly naive = new Map<string, NaiveTunnel>();
  private readonly native = new Map<string, NativeRelay>();

  constructor(
    private readonly frontend: () => TlsFrontend,
    private readonly options: {
      stateDir: string;
      tls: TlsIdentity;
      listenHost: string;
      /** QEMU's user: the source socket is given to it (QEMU connects as that user). */
      qemuUser?: QemuUser;
      /** Which relay runs this agent's `multi` tunnel ends. */
      relay: TunnelRelayKind;
      /** Whether the native relay is built here (a migration may ask for it). */
      nativeAvailable: boolean;
      /** Roles whose certificates may open tunnels (ROUTE_ROLES.tunnel), for the native destination relay. */
      tunnelRoles: readonly Role[];
      /** The native relays' events (refusals, handshake failures, connections), like the front door's. */
      onEvent: (event: TransportEvent) => void;
    },
  ) {}

  /** The identity the naive tunnel and new native relays use from now on (after a reload). */
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

  private nativeEvents(): { tls: TlsIdentity; onEvent: (e: WorkerEvent, pid: number) => void } {
    return {
      tls: this.options.tls,
      onEvent: (e, pid) => this.options.onEvent({ ...e, relay: 'native', pid }),
    };
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
   * the front door's relay, also when the stream itself uses the naive baseline
   * or the native relay.
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
    relay?: TunnelRelayKind;
  }): Promise<{ path: string; close: () => Promise<void> }> {
    const remote = tcpAddressOf(t.destination);
    const listenPath = this.socketPath(t.migrationId, 'disks-out');
    const source = {
      migrationId: disksTunnelId(t.migrationId),
      token: t.token,
      listenPath,
      remote,
      expectedPeerCommonName: t.destinationHost,
      ...this.socketOwner(),
    };
    const native = await this.openNativeSource(source, t.relay);
    if (native !== undefined) return { path: listenPath, close: native };
    const tunnel = await this.frontend().openSourceTunnel(source);
    return { path: listenPath, close: async () => void (await tunnel.close()) };
  }

  /** Destination: accepts tunnel connections for this migration from `peerCommonName` with `token`; returns the naive or native relay's port if any. */
  async accept(t: TunnelAcceptance): Promise<{ naivePort?: number; relayPort?: number }> {
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
    if (this.relayFor(t.relay) === 'native') {
      // A post-copy recovery prepares the same migration again: its old relay goes first.
      await this.native.get(t.migrationId)?.close();
      this.native.delete(t.migrationId);
      try {
        const relay = await NativeRelay.listenDestination({
          ...this.nativeEvents(),
          listen: { host: this.options.listenHost, port: 0 },
          registration,
          tunnelRoles: this.options.tunnelRoles,
        });
        this.native.set(t.migrationId, relay);
        if (relay.ready.port !== undefined) return { relayPort: relay.ready.port };
        await relay.close();
      } catch (err) {
        if (t.relay === 'native') throw err;
        this.fellBack(t.migrationId, 'destination', err);
      }
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
    const native = this.native.get(migrationId);
    if (native !== undefined) {
      this.native.delete(migrationId);
      await native.close();
      return;
    }
    await this.frontend().closeTunnel(migrationId);
  }

  /** Source: a local socket for QEMU, relayed to the destination agent (its native relay's port when it gave one). */
  async open(t: {
    migrationId: string;
    token: string;
    destination: AgentClient;
    destinationHost: string;
    mode: TunnelMode;
    naivePort?: number;
    relayPort?: number;
    relay?: TunnelRelayKind;
  }): Promise<TransportSession> {
    const agentPort = tcpAddressOf(t.destination);
    const listenPath = this.socketPath(t.migrationId, 'out');
    if (t.mode === 'naive') {
      if (t.naivePort === undefined) throw new PeerError('the destination did not open a naive tunnel port');
      const tunnel = await NaiveTunnel.openSource({
        listenPath,
        remote: { host: agentPort.host, port: t.naivePort },
        tls: this.options.tls,
        migrationId: t.migrationId,
        token: t.token,
        expectedPeerCommonName: t.destinationHost,
        ...this.socketOwner(),
      });
      return { uri: `unix:${listenPath}`, close: async () => void (await tunnel.close()) };
    }
    const { relayPort } = t;
    if (relayPort !== undefined && !(Number.isInteger(relayPort) && relayPort > 0 && relayPort < 65536)) {
      throw new PeerError(`the destination gave ${JSON.stringify(relayPort)} as its relay port`);
    }
    const source = {
      migrationId: t.migrationId,
      token: t.token,
      listenPath,
      remote: { host: agentPort.host, port: relayPort ?? agentPort.port },
      expectedPeerCommonName: t.destinationHost,
      ...this.socketOwner(),
    };
    const native = await this.openNativeSource(source, t.relay);
    if (native !== undefined) return { uri: `unix:${listenPath}`, close: native };
    const tunnel = await this.frontend().openSourceTunnel(source);
    return { uri: `unix:${listenPath}`, close: async () => void (await tunnel.close()) };
  }

  /**
   * The relay of one migration's end: the one it asks for, or this agent's own. Asking for the
   * native relay where it is not built is refused (the plan said both ends would run it).
   */
  private relayFor(override: TunnelRelayKind | undefined): TunnelRelayKind {
    if (override === 'native' && !this.options.nativeAvailable) {
      throw new UsageError(
        'this migration asks for the native tunnel relay, which is not built on this host',
        {
          hint: 'run node scripts/setup.mjs on it (it needs gcc and libssl-dev), or migrate without --relay native',
        },
      );
    }
    return override ?? this.options.relay;
  }

  /** The source end through a native relay when this migration runs one; undefined: use the front door (it said why). */
  private async openNativeSource(
    source: {
      migrationId: string;
      token: string;
      listenPath: string;
      remote: { host: string; port: number };
      expectedPeerCommonName: string;
      socketOwner?: { uid: number; gid: number };
    },
    override: TunnelRelayKind | undefined,
  ): Promise<(() => Promise<void>) | undefined> {
    if (this.relayFor(override) !== 'native') return undefined;
    try {
      const relay = await NativeRelay.openSource({ ...this.nativeEvents(), ...source });
      // The relay removes its socket file as it exits (unless a newer relay took the path).
      return async () => void (await relay.close());
    } catch (err) {
      if (override === 'native') throw err;
      this.fellBack(source.migrationId, 'source', err);
      return undefined;
    }
  }

  /** A native relay that would not start: the front door's relay carries this tunnel end instead, and the log says why. */
  private fellBack(migrationId: string, role: 'source' | 'destination', err: unknown): void {
    this.options.onEvent({
      type: 'worker-warning',
      worker: -1,
      pid: 0,
      message: `migration ${migrationId}: the native ${role} relay did not start (${describeError(err)}); the TypeScript relay carries it`,
    });
  }
}

function tcpAddressOf(destination: AgentClient): { host: string; port: number } {
  const { endpoint } = destination;
  if (endpoint.host === undefined || endpoint.port === undefined) {
    throw new UsageError(`a tunnel needs the destination agent's TCP address, not ${endpoint.url}`);
  }
  return { host: endpoint.host, port: endpoint.port };
}

/** The disk tunnel's registration id: the migration's, marked (the tunnel path allows dots). */
function disksTunnelId(migrationId: string): string {
  return `${migrationId}.disks`;
}
