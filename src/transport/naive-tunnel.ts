import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, type TLSSocket } from 'node:tls';
import { LimitError, PeerError } from '../errors.js';
import { peerIdentity, type Role, type TlsIdentity } from '../pki/index.js';
import type { TunnelRemote } from './ipc-protocol.js';
import { listenPrivate, removeStaleSocket, type SocketOwner } from './private-socket.js';
import { closeServer } from './source-tunnel.js';
import { openTunnelConnection } from './tunnel-client.js';
import {
  SWITCHING_PROTOCOLS,
  admitConnection,
  decideTunnelRequest,
  refusal,
  validateRegistration,
  type TunnelRegistration,
} from './tunnel-policy.js';

export interface NaiveTunnelStats {
  bytesFromQemu: number;
  bytesToQemu: number;
  connectionsOpened: number;
}

/** Joins two streams with pipe() both ways; destroys both when either fails or closes. */
function pipeBoth(qemu: Duplex, network: Duplex, stats: NaiveTunnelStats, open: Set<Duplex>): void {
  stats.connectionsOpened += 1;
  open.add(qemu);
  open.add(network);
  qemu.on('data', (c: Buffer) => (stats.bytesFromQemu += c.length));
  network.on('data', (c: Buffer) => (stats.bytesToQemu += c.length));
  qemu.pipe(network);
  network.pipe(qemu);
  const down = (): void => {
    qemu.destroy();
    network.destroy();
    open.delete(qemu);
    open.delete(network);
  };
  for (const s of [qemu, network]) {
    s.on('error', down);
    s.on('close', down);
  }
}

/**
 * The baseline the project exists to beat: a tunnel relayed by one thread of
 * one process per side, over one TLS connection per QEMU connection, with
 * plain stream pipes. Same handshake as the real tunnel; kept for the
 * benchmark only.
 */
export class NaiveTunnel {
  readonly stats: NaiveTunnelStats = { bytesFromQemu: 0, bytesToQemu: 0, connectionsOpened: 0 };
  private readonly open = new Set<Duplex>();
  private server: Server | HttpsServer | undefined;
  private boundAddress: { host: string; port: number } | undefined;
  private listenPath: string | undefined;

  /** The destination end: a TLS port in this process relaying accepted tunnel connections to `targetPath`. */
  static async listenDestination(options: {
    listen: { host: string; port: number };
    tls: TlsIdentity;
    registration: TunnelRegistration;
    /** Roles whose certificates may open tunnels: the agent's route table (ROUTE_ROLES.tunnel). */
    tunnelRoles: readonly Role[];
    cipherSuites?: string;
  }): Promise<NaiveTunnel> {
    const tunnel = new NaiveTunnel();
    const registration = validateRegistration(options.registration);
    let accepted = 0;
    const registrations = new Map([[registration.migrationId, registration]]);
    const server = createHttpsServer({
      ca: options.tls.ca,
      cert: options.tls.cert,
      key: options.tls.key,
      ...(options.tls.crl !== undefined ? { crl: options.tls.crl } : {}),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      honorCipherOrder: true,
      ...(options.cipherSuites !== undefined ? { ciphers: options.cipherSuites } : {}),
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const peer = peerIdentity(socket as TLSSocket);
      const decision = decideTunnelRequest({
        url: req.url,
        headers: req.headers,
        peerCommonName: peer?.commonName ?? '',
        peerRole: peer?.role,
        tunnelRoles: options.tunnelRoles,
        registrations,
      });
      if (!decision.accept) {
        socket.end(refusal(decision.error));
        return;
      }
      if (!admitConnection(accepted, registration.maxConnections)) {
        socket.end(
          refusal(
            new LimitError(`migration ${registration.migrationId} already has all its tunnel connections`),
          ),
        );
        return;
      }
      accepted += 1;
      const target = netConnect({ path: registration.targetPath });
      target.once('error', () =>
        socket.end(refusal(new PeerError('cannot connect to the destination QEMU'))),
      );
      target.once('connect', () => {
        socket.write(SWITCHING_PROTOCOLS);
        if (head.length > 0) target.write(head);
        pipeBoth(target, socket, tunnel.stats, tunnel.open);
        socket.resume();
      });
    });
    // Room for the tunnel's connections and a few that are refused: nobody else needs this port.
    server.maxConnections = registration.maxConnections + 4;
    server.headersTimeout = 10_000;
    tunnel.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.listen.port, options.listen.host, () => resolve());
    });
    const addr = server.address() as AddressInfo;
    tunnel.boundAddress = { host: addr.address, port: addr.port };
    return tunnel;
  }

  /** The source end: a unix socket for the source QEMU, relayed from this process over TLS to `remote`. */
  static async openSource(options: {
    listenPath: string;
    remote: TunnelRemote;
    tls: TlsIdentity;
    migrationId: string;
    token: string;
    expectedPeerCommonName: string;
    /** Who the socket file is given to: QEMU's user, when the agent runs QEMU as another user. */
    socketOwner?: SocketOwner;
    cipherSuites?: string;
  }): Promise<NaiveTunnel> {
    const tunnel = new NaiveTunnel();
    const secureContext = createSecureContext({
      ca: options.tls.ca,
      cert: options.tls.cert,
      key: options.tls.key,
      ...(options.tls.crl !== undefined ? { crl: options.tls.crl } : {}),
      minVersion: 'TLSv1.3',
      ...(options.cipherSuites !== undefined ? { ciphers: options.cipherSuites } : {}),
    });
    const server = createServer({ pauseOnConnect: true }, (qemu: Socket) => {
      qemu.on('error', () => undefined);
      openTunnelConnection({
        remote: options.remote,
        secureContext,
        migrationId: options.migrationId,
        token: options.token,
        expectedPeerCommonName: options.expectedPeerCommonName,
        timeoutMs: 15_000,
        noDelay: true,
      }).then(
        ({ socket, head }) => {
          if (head.length > 0) qemu.write(head);
          pipeBoth(qemu, socket, tunnel.stats, tunnel.open);
          qemu.resume();
          socket.resume();
        },
        () => qemu.destroy(),
      );
    });
    tunnel.server = server;
    tunnel.listenPath = options.listenPath;
    await listenPrivate(server, options.listenPath, options.socketOwner);
    return tunnel;
  }

  get address(): { host: string; port: number } | undefined {
    return this.boundAddress;
  }

  async close(): Promise<NaiveTunnelStats> {
    for (const s of this.open) s.destroy();
    if (this.server !== undefined) await closeServer(this.server, 1000);
    if (this.listenPath !== undefined) removeStaleSocket(this.listenPath);
    return { ...this.stats };
  }
}
