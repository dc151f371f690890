/**
 * A transport worker process (forked by WorkerPool). It terminates the
 * agent's mutual TLS for the connections the main process hands it, serves
 * HTTP/1.1 on them (tunnel upgrades; everything else is proxied to the
 * agent's internal API), and opens the outgoing TLS connections of source
 * tunnels. Each worker runs on its own core; the main process only accepts
 * connections and passes their descriptors here.
 */
import {
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as netConnect, type NetConnectOpts, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import {
  LimitError,
  PeerError,
  UnavailableError,
  UsageError,
  describeError,
  type VmferryError,
} from '../errors.js';
import { peerIdentity, type Role } from '../pki/index.js';
import {
  isToWorker,
  type FromWorker,
  type PemIdentity,
  type SourceRegistration,
  type ToWorker,
  type TunnelCounters,
  type WorkerStatsReply,
  type WorkerEvent,
} from './ipc-protocol.js';
import { relay, type Relay, type RelayResult } from './relay.js';
import { openTunnelConnection } from './tunnel-client.js';
import type { RelayTuning } from './relay-tuning.js';
import {
  MAX_API_BODY_BYTES,
  SWITCHING_PROTOCOLS,
  admitFrontendConnection,
  decideTunnelRequest,
  proxyRequestHeaders,
  proxyResponseHeaders,
  refusal,
  tunnelRefused,
  type TunnelRegistration,
} from './tunnel-policy.js';

interface Tunnel {
  counters: TunnelCounters;
  relays: Set<Relay>;
  /** Connections still in their handshake; destroyed with the tunnel. */
  pending: Set<Duplex>;
}

interface SourceTunnel extends Tunnel {
  registration: SourceRegistration;
  secureContext: SecureContext;
}

interface DestinationTunnel extends Tunnel {
  registration: TunnelRegistration;
}

let tuning: RelayTuning;
let identity: PemIdentity;
let internalApi: { path: string; secret: string } | undefined;
/** Connections to the agent's port this worker serves at once (its share of [vmferry] max_connections). */
let connectionLimit = Number.POSITIVE_INFINITY;
let frontendOpen = 0;
let tunnelRoles: readonly Role[] = [];
let ownContext: SecureContext;
let server: ReturnType<typeof createHttpsServer>;
const internalAgent = new HttpAgent({ keepAlive: true });
const destinations = new Map<string, DestinationTunnel>();
const registrations = new Map<string, TunnelRegistration>();
const sources = new Map<string, SourceTunnel>();
const claims = new Map<number, (granted: boolean) => void>();
let nextClaimId = 1;
let bytesRelayed = 0;
let connectionsOpen = 0;

function send(message: FromWorker): void {
  if (process.connected) process.send?.(message);
}

function report(event: WorkerEvent): void {
  send({ type: 'event', event });
}

function emptyTunnel(): Tunnel {
  return {
    counters: { connectionsOpened: 0, connectionsOpen: 0, bytesFromQemu: 0, bytesToQemu: 0 },
    relays: new Set(),
    pending: new Set(),
  };
}

function remoteAddressOf(socket: Duplex): string {
  // A TLS socket that failed its handshake has lost its handle; its raw socket (_parent) cached the address.
  const s = socket as Partial<Socket> & { _parent?: Partial<Socket> };
  const address = s.remoteAddress ?? s._parent?.remoteAddress;
  if (address === undefined) return 'local socket';
  return `${address}:${s.remotePort ?? s._parent?.remotePort ?? ''}`;
}

/** Relays `qemu` <-> `network` and keeps the tunnel's counters; a = QEMU side. */
function startRelay(
  tunnel: Tunnel,
  qemu: Duplex,
  network: Duplex,
  onClosed: (result: RelayResult) => void,
): void {
  const c = tunnel.counters;
  c.connectionsOpened += 1;
  c.connectionsOpen += 1;
  connectionsOpen += 1;
  const r = relay(qemu, network, {
    lingerMs: tuning.lingerMs,
    // a is the QEMU side (plain socket), b the TLS side.
    batchWrites: { aToB: tuning.batchTlsWrites, bToA: tuning.batchWrites },
    onBytes: (direction, bytes) => {
      bytesRelayed += bytes;
      if (direction === 'aToB') c.bytesFromQemu += bytes;
      else c.bytesToQemu += bytes;
    },
  });
  tunnel.relays.add(r);
  void r.closed.then((result) => {
    tunnel.relays.delete(r);
    c.connectionsOpen -= 1;
    connectionsOpen -= 1;
    onClosed(result);
  });
}

function destroyTunnel(tunnel: Tunnel): void {
  for (const r of tunnel.relays) r.destroy();
  for (const s of tunnel.pending) s.destroy();
  tunnel.pending.clear();
}

function refuse(socket: Duplex, error: VmferryError): void {
  if (socket.writable) socket.end(refusal(error));
  const t = setTimeout(() => socket.destroy(), 2000);
  t.unref();
  socket.once('close', () => clearTimeout(t));
}

function claimConnection(migrationId: string): Promise<boolean> {
  const id = nextClaimId++;
  return new Promise((resolve) => {
    claims.set(id, resolve);
    send({ type: 'claim', id, migrationId });
  });
}

// ---- destination side: tunnel upgrades on the agent's port ----

function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const tlsSocket = socket as TLSSocket;
  const peer = peerIdentity(tlsSocket);
  const peerCommonName = peer?.commonName ?? '';
  const decision = decideTunnelRequest({
    url: req.url,
    headers: req.headers,
    peerCommonName,
    peerRole: peer?.role,
    tunnelRoles,
    registrations,
  });
  const remoteAddress = remoteAddressOf(socket);
  const refuseAndReport = (error: VmferryError, reason: string, migrationId: string | undefined): void => {
    report({
      type: 'tunnel-refused',
      migrationId,
      status: error.httpStatus,
      reason,
      peerCommonName,
      remoteAddress,
    });
    refuse(socket, error);
  };
  if (!decision.accept) {
    refuseAndReport(decision.error, decision.reason, undefined);
    return;
  }
  const { migrationId } = decision.registration;
  const tunnel = destinations.get(migrationId);
  if (tunnel === undefined) {
    refuseAndReport(tunnelRefused(), `migration ${migrationId} has no prepared tunnel`, migrationId);
    return;
  }
  socket.pause();
  tunnel.pending.add(socket);
  socket.on('error', () => undefined);
  void claimConnection(migrationId).then((granted) => {
    const current = destinations.get(migrationId);
    if (socket.destroyed || current !== tunnel) {
      tunnel.pending.delete(socket);
      socket.destroy();
      return;
    }
    if (!granted) {
      tunnel.pending.delete(socket);
      const reason = `migration ${migrationId} already has all its tunnel connections`;
      refuseAndReport(new LimitError(reason), reason, migrationId);
      return;
    }
    connectToQemu(tunnel, decision.registration, socket, head, (error) =>
      refuseAndReport(error, error.message, migrationId),
    );
  });
}

/** Joins an admitted tunnel connection to the destination QEMU's socket, and relays between them. */
function connectToQemu(
  tunnel: Tunnel,
  registration: TunnelRegistration,
  socket: Duplex,
  head: Buffer,
  refuse: (error: VmferryError) => void,
): void {
  const { migrationId } = registration;
  // Socket options reach stream.Duplex; @types/node does not list the high-water marks.
  const target = netConnect({
    path: registration.targetPath,
    allowHalfOpen: true,
    writableHighWaterMark: tuning.writeHighWaterMark,
  } as NetConnectOpts);
  tunnel.pending.add(target);
  const failConnect = (err: Error): void => {
    tunnel.pending.delete(socket);
    tunnel.pending.delete(target);
    target.destroy();
    refuse(new PeerError(`cannot connect to the destination QEMU: ${err.message}`));
  };
  target.once('error', failConnect);
  target.once('connect', () => {
    target.off('error', failConnect);
    tunnel.pending.delete(socket);
    tunnel.pending.delete(target);
    if (socket.destroyed) {
      target.destroy();
      return;
    }
    socket.write(SWITCHING_PROTOCOLS);
    if (head.length > 0) target.write(head);
    report({ type: 'tunnel-connection-opened', role: 'destination', migrationId });
    startRelay(tunnel, target, socket, (result) =>
      report({
        type: 'tunnel-connection-closed',
        role: 'destination',
        migrationId,
        bytesFromQemu: result.aToB,
        bytesToQemu: result.bToA,
        ...(result.error !== undefined ? { error: result.error.message } : {}),
      }),
    );
  });
}

// ---- everything else on the agent's port: the internal API, behind this TLS ----

function onRequest(req: IncomingMessage, res: ServerResponse): void {
  const fail = (error: VmferryError): void => {
    if (!res.headersSent) {
      const body = `${JSON.stringify(error.toJSON())}\n`;
      res.writeHead(error.httpStatus, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    } else {
      res.destroy();
    }
  };
  if (internalApi === undefined) {
    fail(new UnavailableError('this agent serves no API on this port'));
    return;
  }
  if (admitFrontendConnection(frontendOpen - 1, connectionLimit) !== 'serve') {
    res.shouldKeepAlive = false;
    report({ type: 'over-connection-limit', open: frontendOpen, dropped: false });
    fail(
      new UnavailableError(
        `the agent has ${frontendOpen} connections open here, over its limit ([vmferry] max_connections)`,
        { hint: 'try again shortly; clients that keep many connections open should share fewer' },
      ),
    );
    return;
  }
  // Bodies past the API's limit are refused here: the API would answer before reading them and
  // close the connection under this worker's write, and the caller would get a 502 instead of a 400.
  const tooLarge = (): void => {
    res.shouldKeepAlive = false;
    fail(new UsageError(`request body larger than ${MAX_API_BODY_BYTES} bytes`));
  };
  if (Number(req.headers['content-length'] ?? 0) > MAX_API_BODY_BYTES) {
    tooLarge();
    req.resume();
    return;
  }
  proxyToApi(req, res, internalApi, { fail, tooLarge });
}

/** Sends one request on to the agent's internal API and its answer back; `fail` answers an error, `tooLarge` a body over the limit. */
function proxyToApi(
  req: IncomingMessage,
  res: ServerResponse,
  api: { path: string; secret: string },
  answer: { fail: (error: VmferryError) => void; tooLarge: () => void },
): void {
  const { fail, tooLarge } = answer;
  const peer = peerIdentity(req.socket as TLSSocket);
  const upstream = httpRequest({
    socketPath: api.path,
    agent: internalAgent,
    method: req.method,
    path: req.url,
    headers: proxyRequestHeaders(
      req.headers,
      { commonName: peer?.commonName ?? '', role: peer?.role },
      api.secret,
    ),
  });
  let answered = false;
  /** This worker gave the API call up itself: no failure of the API. */
  let gaveUp = false;
  upstream.on('response', (ures) => {
    answered = true;
    res.writeHead(ures.statusCode ?? 502, ures.statusMessage, proxyResponseHeaders(ures.headers));
    ures.pipe(res);
    ures.on('error', () => res.destroy());
  });
  upstream.on('error', (err) => {
    // It answered before it read all of the body (and closed): its answer stands.
    if (answered || gaveUp) return;
    report({ type: 'proxy-failed', reason: describeError(err) });
    fail(new PeerError(`the agent's internal API did not answer: ${err.message}`));
  });
  // The caller left (or sent bytes after its request that are not HTTP, and was answered 400 and
  // cut off): the API call is given up.
  res.on('close', () => {
    if (res.writableFinished) return;
    gaveUp = true;
    upstream.destroy();
  });
  // The body is read whole (at most MAX_API_BODY_BYTES) and sent in one write: streamed, a request
  // the API refuses before reading its body (a role it does not let in) raced the API's answer and
  // closing with this worker's next write, and its caller got a 502 for a 403.
  const chunks: Buffer[] = [];
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received <= MAX_API_BODY_BYTES) chunks.push(chunk);
    else if (!gaveUp) {
      gaveUp = true;
      upstream.destroy();
      tooLarge();
    }
  });
  req.on('end', () => {
    if (!gaveUp) upstream.end(Buffer.concat(chunks));
  });
}

// ---- source side: connections from the source QEMU, relayed to the remote agent ----

function onSourceConnection(qemu: Socket, tunnelId: string, index: number): void {
  const source = sources.get(tunnelId);
  if (source === undefined) {
    qemu.destroy();
    send({ type: 'source-established', tunnelId, index, ok: false });
    return;
  }
  qemu.pause();
  qemu.on('error', () => undefined);
  const { registration } = source;
  const { migrationId } = registration;
  const abort = new AbortController();
  const onEarlyClose = (): void => abort.abort();
  qemu.once('close', onEarlyClose);
  source.pending.add(qemu);
  openTunnelConnection(
    {
      remote: registration.remote,
      secureContext: source.secureContext,
      migrationId,
      token: registration.token,
      expectedPeerCommonName: registration.expectedPeerCommonName,
      timeoutMs: tuning.handshakeTimeoutMs,
      noDelay: tuning.noDelay,
      highWaterMark: tuning.writeHighWaterMark,
    },
    abort.signal,
  ).then(
    ({ socket: network, head }) => {
      qemu.off('close', onEarlyClose);
      source.pending.delete(qemu);
      if (qemu.destroyed || sources.get(tunnelId) !== source) {
        network.destroy();
        qemu.destroy();
        send({ type: 'source-established', tunnelId, index, ok: false });
        return;
      }
      if (head.length > 0) qemu.write(head);
      report({ type: 'tunnel-connection-opened', role: 'source', migrationId, index });
      send({ type: 'source-established', tunnelId, index, ok: true });
      startRelay(source, qemu, network, (result) =>
        report({
          type: 'tunnel-connection-closed',
          role: 'source',
          migrationId,
          bytesFromQemu: result.aToB,
          bytesToQemu: result.bToA,
          ...(result.error !== undefined ? { error: result.error.message } : {}),
        }),
      );
    },
    (err: unknown) => {
      qemu.off('close', onEarlyClose);
      source.pending.delete(qemu);
      qemu.destroy();
      report({ type: 'source-connect-failed', migrationId, index, reason: describeError(err) });
      send({ type: 'source-established', tunnelId, index, ok: false });
    },
  );
}

// ---- IPC from the main process ----

function contextFor(pem: PemIdentity): SecureContext {
  return createSecureContext({ ...pem, minVersion: 'TLSv1.3', ciphers: tuning.cipherSuites });
}

/** The worker's TLS server on the agent's port, from the main process's init message. */
function start(message: Extract<ToWorker, { type: 'init' }>): void {
  tuning = message.tuning;
  identity = message.tls;
  internalApi = message.internalApi;
  tunnelRoles = message.tunnelRoles;
  connectionLimit = message.maxConnections ?? Number.POSITIVE_INFINITY;
  ownContext = contextFor(identity);
  server = createHttpsServer(
    {
      ...identity,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      ciphers: tuning.cipherSuites,
      honorCipherOrder: true,
      handshakeTimeout: 10_000,
    },
    onRequest,
  );
  server.on('upgrade', onUpgrade);
  // Bytes that are not HTTP: answered like every refusal, {code, message}, instead of Node's bare 400.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || !(err.code ?? '').startsWith('HPE_')) {
      socket.destroy();
      return;
    }
    refuse(
      socket,
      new UsageError(
        `not an HTTP/1.1 request: ${err.code === 'HPE_HEADER_OVERFLOW' ? 'headers too large' : 'malformed'}`,
      ),
    );
  });
  server.on('tlsClientError', (err: Error, s: TLSSocket) => {
    // Node checks the client certificate after the handshake and just closes: say why.
    const why = s.authorizationError === null ? '' : ` (client certificate: ${String(s.authorizationError)})`;
    report({
      type: 'tls-handshake-failed',
      reason: `${err.message}${why}`,
      remoteAddress: remoteAddressOf(s),
    });
  });
  server.keepAliveTimeout = 5000;
  // A client that connects and then stalls holds a connection: bounded in time as well as in number.
  server.headersTimeout = 15_000;
  server.requestTimeout = 60_000;
}

function workerStats(): WorkerStatsReply {
  const cpu = process.cpuUsage();
  const pick = (m: Map<string, Tunnel>): Record<string, TunnelCounters> =>
    Object.fromEntries([...m].map(([k, t]) => [k, { ...t.counters }]));
  return {
    pid: process.pid,
    cpuUserMicros: cpu.user,
    cpuSystemMicros: cpu.system,
    minorPageFaults: process.resourceUsage().minorPageFault,
    bytesRelayed,
    connectionsOpen,
    destinations: pick(destinations),
    sources: pick(sources),
  };
}

function handle(message: ToWorker, socket: Socket | undefined): void {
  switch (message.type) {
    case 'init': {
      start(message);
      send({ type: 'ack', id: message.id });
      return;
    }
    case 'reload-tls': {
      identity = message.tls;
      ownContext = contextFor(identity);
      server.setSecureContext({ ...identity, minVersion: 'TLSv1.3', ciphers: tuning.cipherSuites });
      send({ type: 'ack', id: message.id });
      return;
    }
    case 'frontend-connection': {
      if (socket === undefined) return;
      if (admitFrontendConnection(frontendOpen, connectionLimit) === 'drop') {
        socket.destroy();
        report({ type: 'over-connection-limit', open: frontendOpen, dropped: true });
        return;
      }
      frontendOpen += 1;
      socket.once('close', () => (frontendOpen -= 1));
      socket.setNoDelay(tuning.noDelay);
      // Read the peer address now: net.Socket caches it, and it is gone once a failed handshake destroys the socket.
      void socket.remoteAddress;
      server.emit('connection', socket);
      return;
    }
    case 'accept-tunnel': {
      const { registration } = message;
      registrations.set(registration.migrationId, registration);
      const existing = destinations.get(registration.migrationId);
      if (existing !== undefined) existing.registration = registration;
      else destinations.set(registration.migrationId, { ...emptyTunnel(), registration });
      send({ type: 'ack', id: message.id });
      return;
    }
    case 'close-tunnel': {
      registrations.delete(message.migrationId);
      const tunnel = destinations.get(message.migrationId);
      destinations.delete(message.migrationId);
      if (tunnel !== undefined) destroyTunnel(tunnel);
      send({ type: 'ack', id: message.id });
      return;
    }
    case 'register-source': {
      const { registration } = message;
      const secureContext = registration.tls === undefined ? ownContext : contextFor(registration.tls);
      sources.set(registration.tunnelId, { ...emptyTunnel(), registration, secureContext });
      send({ type: 'ack', id: message.id });
      return;
    }
    case 'close-source': {
      const tunnel = sources.get(message.tunnelId);
      sources.delete(message.tunnelId);
      if (tunnel !== undefined) destroyTunnel(tunnel);
      send({ type: 'ack', id: message.id });
      return;
    }
    case 'source-connection': {
      if (socket === undefined) return;
      onSourceConnection(socket, message.tunnelId, message.index);
      return;
    }
    case 'claim-result': {
      const resolve = claims.get(message.id);
      claims.delete(message.id);
      resolve?.(message.granted);
      return;
    }
    case 'stats': {
      send({ type: 'stats', id: message.id, stats: workerStats() });
      return;
    }
  }
}

process.on('message', (message: unknown, socket: Socket | undefined) => {
  if (!isToWorker(message)) return;
  try {
    handle(message, socket);
  } catch (err) {
    socket?.destroy();
    if ('id' in message) send({ type: 'ack', id: message.id, error: describeError(err) });
  }
});
// The main process is gone: nothing will hand us work or collect our counters.
process.on('disconnect', () => process.exit(0));
