import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { STATUS_CODES } from 'node:http';
import { AuthError, NotFoundError, UsageError, type VmferryError } from '../errors.js';
import type { Role } from '../pki/index.js';
import { CHANNEL_RANGE } from '../policy/index.js';

/** The HTTP Upgrade protocol token of a tunnel request. */
export const TUNNEL_PROTOCOL = 'vmferry-tunnel';
/** Request header carrying the per-migration tunnel token. */
export const TOKEN_HEADER = 'x-vmferry-token';
/** Header the frontend adds to proxied API requests: the verified client certificate's CN. */
export const PEER_CN_HEADER = 'x-vmferry-peer-cn';
/** Header the frontend adds to proxied API requests: the role that certificate names ('' for none). */
export const PEER_ROLE_HEADER = 'x-vmferry-peer-role';
/** Header the frontend adds to proxied API requests: the agent's per-start secret, so only its workers are heard. */
export const INTERNAL_SECRET_HEADER = 'x-vmferry-internal-secret';
/** The largest request body the agent's API takes; the front door refuses larger ones itself. */
export const MAX_API_BODY_BYTES = 1024 * 1024;
/** Headers only the front door may set: dropped from what clients send. */
const FRONT_DOOR_HEADERS = new Set([PEER_CN_HEADER, PEER_ROLE_HEADER, INTERNAL_SECRET_HEADER]);

const TUNNEL_PATH = /^\/v1\/tunnel\/([A-Za-z0-9._~-]{1,128})$/;

/** What a destination worker knows about a tunnel the agent has prepared. */
export interface TunnelRegistration {
  migrationId: string;
  token: string;
  peerCommonName: string;
  targetPath: string;
  maxConnections: number;
}

export type TunnelDecision =
  | { accept: true; registration: TunnelRegistration }
  | {
      accept: false;
      /** What the client is told: the error's code and status; its message stays vague for a 403. */
      error: UsageError | AuthError | NotFoundError;
      status: number;
      /** For the agent's log only. */
      reason: string;
    };

function refuse(error: UsageError | AuthError | NotFoundError, reason: string): TunnelDecision {
  return { accept: false, error, status: error.httpStatus, reason };
}

/** Compares two secrets in time independent of where they differ (and of their lengths). */
export function tokensEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b) && expected.length > 0;
}

/** The migration id of a `/v1/tunnel/<id>` request target; undefined for any other target. */
export function tunnelIdFromPath(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf('?');
  const m = TUNNEL_PATH.exec(q >= 0 ? url.slice(0, q) : url);
  return m?.[1];
}

/** True when a migration id can be carried in a tunnel request path. */
export function isValidMigrationId(id: string): boolean {
  return TUNNEL_PATH.test(`/v1/tunnel/${id}`);
}

function headerValue(value: string | string[] | undefined): string {
  return Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
}

/** The one answer to a wrong migration id, token or peer. */
export function tunnelRefused(): AuthError {
  return new AuthError('tunnel refused');
}

/**
 * Decides whether an upgrade request may become a tunnel connection. Every
 * refusal has the same 403 for a wrong id, token or peer, so a caller cannot
 * probe which migrations exist; `reason` is for the agent's log only.
 */
export function decideTunnelRequest(request: {
  url: string | undefined;
  headers: IncomingHttpHeaders;
  peerCommonName: string;
  /** The role the peer's certificate names (undefined: none). */
  peerRole: Role | undefined;
  /** The roles that may open tunnels: the agent's route table (src/agent/route-access.ts). */
  tunnelRoles: readonly Role[];
  registrations: ReadonlyMap<string, TunnelRegistration>;
}): TunnelDecision {
  if (headerValue(request.headers.upgrade).toLowerCase() !== TUNNEL_PROTOCOL) {
    const reason = `unsupported upgrade ${JSON.stringify(request.headers.upgrade)}`;
    return refuse(new UsageError(reason), reason);
  }
  const migrationId = tunnelIdFromPath(request.url);
  if (migrationId === undefined) {
    const reason = `no tunnel endpoint ${JSON.stringify(request.url)}`;
    return refuse(new NotFoundError(reason), reason);
  }
  if (request.peerRole === undefined || !request.tunnelRoles.includes(request.peerRole)) {
    return refuse(
      tunnelRefused(),
      `${request.peerRole ?? 'a certificate without a role'} ${JSON.stringify(request.peerCommonName)} may not open tunnels (${request.tunnelRoles.join(', ')} only)`,
    );
  }
  const registration = request.registrations.get(migrationId);
  const token = headerValue(request.headers[TOKEN_HEADER]);
  if (registration === undefined) {
    return refuse(tunnelRefused(), `migration ${migrationId} has no prepared tunnel`);
  }
  if (!tokensEqual(token, registration.token)) {
    return refuse(tunnelRefused(), `wrong tunnel token for migration ${migrationId}`);
  }
  if (request.peerCommonName !== registration.peerCommonName) {
    return refuse(
      tunnelRefused(),
      `peer ${JSON.stringify(request.peerCommonName)} is not ${JSON.stringify(registration.peerCommonName)}, the peer of migration ${migrationId}`,
    );
  }
  return { accept: true, registration };
}

/** Whether one more connection fits a tunnel's budget (connections ever accepted, not concurrent ones). */
export function admitConnection(accepted: number, maxConnections: number): boolean {
  return accepted < maxConnections;
}

/**
 * What a worker does with one more connection to the agent's port when `open`
 * are open and it may serve `limit`: serve it; past the limit, complete the TLS
 * handshake and answer its requests 503 (the caller learns why); past twice the
 * limit, close it unread, so a flood costs no handshakes.
 */
export function admitFrontendConnection(open: number, limit: number): 'serve' | 'refuse' | 'drop' {
  if (open < limit) return 'serve';
  return open < 2 * limit ? 'refuse' : 'drop';
}

/** Round-robin over live workers: the first live index after `previous`, or -1 when none lives. */
export function nextWorkerIndex(previous: number, alive: readonly boolean[]): number {
  const n = alive.length;
  for (let step = 1; step <= n; step++) {
    const i = (((previous + step) % n) + n) % n;
    if (alive[i] === true) return i;
  }
  return -1;
}

// RFC 9110 7.6.1 connection-specific fields, plus the ones Node sets itself for the hop.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/**
 * Request headers for the internal API: the client's end-to-end headers, with
 * the peer's CN and role set from the verified certificate and the agent's
 * per-start secret (client-sent values are dropped, so they cannot be spoofed).
 */
export function proxyRequestHeaders(
  headers: IncomingHttpHeaders,
  peer: { commonName: string; role: Role | undefined },
  secret: string,
): OutgoingHttpHeaders {
  const connectionListed = new Set(
    headerValue(headers.connection)
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s.length > 0),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (
      value === undefined ||
      HOP_BY_HOP.has(name) ||
      connectionListed.has(name) ||
      FRONT_DOOR_HEADERS.has(name)
    )
      continue;
    out[name] = value;
  }
  out[PEER_CN_HEADER] = peer.commonName;
  out[PEER_ROLE_HEADER] = peer.role ?? '';
  out[INTERNAL_SECRET_HEADER] = secret;
  return out;
}

/** Response headers sent back to the client: the internal API's end-to-end headers. */
export function proxyResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** The request a source worker sends on a fresh TLS connection to open a tunnel connection. */
export function tunnelRequest(migrationId: string, token: string, host: string): string {
  return (
    `GET /v1/tunnel/${migrationId} HTTP/1.1\r\n` +
    `Host: ${host}\r\n` +
    `Connection: Upgrade\r\n` +
    `Upgrade: ${TUNNEL_PROTOCOL}\r\n` +
    `${TOKEN_HEADER}: ${token}\r\n\r\n`
  );
}

export const SWITCHING_PROTOCOLS = `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_PROTOCOL}\r\n\r\n`;

/**
 * A short HTTP reply that refuses a request and closes the connection: the
 * error's status (errors.ts) and its `{code, message, hint}` body.
 */
export function refusal(error: VmferryError): string {
  const text = `${JSON.stringify(error.toJSON())}\n`;
  const status = error.httpStatus;
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`
  );
}

export type UpgradeResponse =
  { complete: false } | { complete: true; status: number; headerBytes: number; body: string };

const MAX_RESPONSE_HEAD = 16 * 1024;

/**
 * Parses the reply to a tunnel request from the bytes received so far. `headerBytes`
 * is where tunnel data starts (bytes after it belong to the relayed stream).
 */
export function parseUpgradeResponse(received: Buffer): UpgradeResponse {
  const end = received.indexOf('\r\n\r\n');
  if (end < 0) {
    if (received.length > MAX_RESPONSE_HEAD)
      return { complete: true, status: 0, headerBytes: received.length, body: '' };
    return { complete: false };
  }
  const head = received.subarray(0, end).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  const status = m === null ? 0 : Number(m[1]);
  return { complete: true, status, headerBytes: end + 4, body: received.subarray(end + 4).toString('utf8') };
}

/** Checks a destination tunnel's registration on entry; a bad field throws naming it. */
export function validateRegistration(r: TunnelRegistration): TunnelRegistration {
  const bad = (field: string, expect: string, got: unknown): never => {
    throw new UsageError(`tunnel ${field} must be ${expect}, got ${JSON.stringify(got)}`);
  };
  if (typeof r.migrationId !== 'string' || !isValidMigrationId(r.migrationId)) {
    bad('migrationId', '1-128 characters from A-Z a-z 0-9 . _ ~ -', r.migrationId);
  }
  if (typeof r.token !== 'string' || r.token.length < 16 || /[\r\n]/.test(r.token)) {
    bad(
      'token',
      'a string of at least 16 characters on one line',
      r.token === undefined ? r.token : '<redacted>',
    );
  }
  if (typeof r.peerCommonName !== 'string' || r.peerCommonName.length === 0) {
    bad('peerCommonName', 'a non-empty certificate CN', r.peerCommonName);
  }
  if (typeof r.targetPath !== 'string' || !r.targetPath.startsWith('/')) {
    bad('targetPath', 'an absolute unix socket path', r.targetPath);
  }
  // QEMU opens a main connection and one per multifd channel.
  const most = CHANNEL_RANGE.max + 1;
  if (!Number.isInteger(r.maxConnections) || r.maxConnections < 1 || r.maxConnections > most) {
    bad('maxConnections', `an integer from 1 to ${most}`, r.maxConnections);
  }
  return r;
}

/** Checks a source tunnel's options on entry (either relay); a bad one throws naming it. */
export function validateSourceTunnel(o: { migrationId: string; listenPath: string; token: string }): void {
  if (!isValidMigrationId(o.migrationId)) {
    throw new UsageError(`tunnel migrationId ${JSON.stringify(o.migrationId)} is not a valid id`);
  }
  if (!o.listenPath.startsWith('/')) {
    throw new UsageError(`tunnel listenPath must be absolute, got ${JSON.stringify(o.listenPath)}`);
  }
  if (o.token.length === 0 || /[\r\n]/.test(o.token)) {
    throw new UsageError('tunnel token must be a non-empty string on one line');
  }
}
