import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { MigrationError, UsageError } from '../errors.js';
import { packageRoot } from '../paths.js';
import type { Role, TlsIdentity } from '../pki/index.js';
import type { WorkerEvent } from './ipc-protocol.js';
import type { SocketOwner } from './private-socket.js';
import { DEFAULT_CIPHER_SUITES } from './relay-tuning.js';
import { validateRegistration, validateSourceTunnel, type TunnelRegistration } from './tunnel-policy.js';

/** Where scripts/setup.mjs builds the native relay (`make -C native`). */
export function nativeRelayPath(root = packageRoot()): string {
  return join(root, 'native', 'build', 'vmferry-relay');
}

/** Whether the native relay can run here: built and executable, or why not. */
export type NativeRelayAvailability =
  { available: true; path: string } | { available: false; reason: string };

export function nativeRelayAvailability(path = nativeRelayPath()): NativeRelayAvailability {
  try {
    accessSync(path, constants.X_OK);
    return { available: true, path };
  } catch {
    return {
      available: false,
      reason: `${path} is not built (scripts/setup.mjs builds it with make -C native; it needs gcc and libssl-dev)`,
    };
  }
}

/** What the relay process reports on stdout, one JSON object a line. */
export type NativeRelayEvent =
  | { type: 'ready'; pid: number; port?: number; path?: string; openssl: string }
  | { type: 'closed'; bytesFromQemu: number; bytesToQemu: number }
  | { type: 'error'; reason: string }
  | WorkerEvent;

const isString = (v: unknown): v is string => typeof v === 'string';
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * One stdout line of the relay as an event; undefined for anything that is not one
 * of the events it sends (a line is never trusted to have the fields it claims).
 */
export function parseRelayEvent(line: string): NativeRelayEvent | undefined {
  let v: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    v = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const role = v.role === 'source' || v.role === 'destination' ? v.role : undefined;
  switch (v.type) {
    case 'ready':
      if (!isCount(v.pid) || !isString(v.openssl)) return undefined;
      if (isCount(v.port)) return { type: 'ready', pid: v.pid, port: v.port, openssl: v.openssl };
      if (isString(v.path)) return { type: 'ready', pid: v.pid, path: v.path, openssl: v.openssl };
      return undefined;
    case 'closed':
      return isCount(v.bytesFromQemu) && isCount(v.bytesToQemu)
        ? { type: 'closed', bytesFromQemu: v.bytesFromQemu, bytesToQemu: v.bytesToQemu }
        : undefined;
    case 'error':
      return isString(v.reason) ? { type: 'error', reason: v.reason } : undefined;
    case 'tunnel-refused':
      if (!isCount(v.status) || !isString(v.reason) || !isString(v.peerCommonName)) return undefined;
      if (!isString(v.remoteAddress) || (v.migrationId !== undefined && !isString(v.migrationId)))
        return undefined;
      return {
        type: 'tunnel-refused',
        migrationId: v.migrationId,
        status: v.status,
        reason: v.reason,
        peerCommonName: v.peerCommonName,
        remoteAddress: v.remoteAddress,
      };
    case 'tls-handshake-failed':
      return isString(v.reason) && isString(v.remoteAddress)
        ? { type: 'tls-handshake-failed', reason: v.reason, remoteAddress: v.remoteAddress }
        : undefined;
    case 'tunnel-connection-opened':
      if (role === undefined || !isString(v.migrationId)) return undefined;
      return {
        type: 'tunnel-connection-opened',
        role,
        migrationId: v.migrationId,
        ...(isCount(v.index) ? { index: v.index } : {}),
      };
    case 'tunnel-connection-closed':
      if (role === undefined || !isString(v.migrationId)) return undefined;
      if (!isCount(v.bytesFromQemu) || !isCount(v.bytesToQemu)) return undefined;
      if (v.error !== undefined && !isString(v.error)) return undefined;
      return {
        type: 'tunnel-connection-closed',
        role,
        migrationId: v.migrationId,
        bytesFromQemu: v.bytesFromQemu,
        bytesToQemu: v.bytesToQemu,
        ...(v.error !== undefined ? { error: v.error } : {}),
        ...(v.sendPath === 'sealed' || v.sendPath === 'ssl-write' ? { sendPath: v.sendPath } : {}),
        ...(isCount(v.keyUpdatesSent) ? { keyUpdatesSent: v.keyUpdatesSent } : {}),
        ...(v.receivePath === 'opened' || v.receivePath === 'ssl-read' ? { receivePath: v.receivePath } : {}),
        ...(isCount(v.keyUpdatesReceived) ? { keyUpdatesReceived: v.keyUpdatesReceived } : {}),
      };
    case 'source-connect-failed':
      return isString(v.migrationId) && isCount(v.index) && isString(v.reason)
        ? { type: 'source-connect-failed', migrationId: v.migrationId, index: v.index, reason: v.reason }
        : undefined;
    default:
      return undefined;
  }
}

/** The relay's stdin: records `NAME LENGTH\n<value>\n`, so PEM text and secrets need no quoting. */
export function encodeRelayConfig(fields: Record<string, string | number | undefined>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, raw] of Object.entries(fields)) {
    if (raw === undefined) continue;
    if (!/^[a-z_]+$/.test(name)) throw new UsageError(`native relay option ${name} is not a name`);
    const value = Buffer.from(String(raw), 'utf8');
    parts.push(Buffer.from(`${name} ${value.length}\n`), value, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** Knobs of the native relay's data path, for the benchmark (the defaults are what measured cheapest). */
export interface NativeRelayTuning {
  /** Bytes of TLS records gathered in a buffering BIO to leave in one write(2); 0: one write per record. */
  writeBatch?: number;
  /** TCP_CORK while a chunk read from QEMU is written out. */
  cork?: boolean;
  /** Drain up to 1 MiB of records into one write to QEMU (off: 16 KiB at a time). */
  downBatch?: boolean;
  /** Bytes read from QEMU per SSL_write (sealed: per batch of records, a multiple of 16 KiB). */
  upBuffer?: number;
  /**
   * The sending direction seals its own TLS 1.3 records after the head exchange (read straight
   * into record slots, sealed in place, one write per batch); off: SSL_write. Default on.
   */
  sealed?: boolean;
  /** Sealed: records under one key before a KeyUpdate (tests set a few to see many). */
  keyUpdateRecords?: number;
  /** Sealed: each KeyUpdate asks the peer to update its sending key too (tests). */
  keyUpdateRequested?: boolean;
  /**
   * The receiving direction opens the peer's TLS 1.3 records itself after the head exchange (one
   * recv, records decrypted in place, one writev to QEMU); off: SSL_read. Only with the sealed send
   * path. Default on.
   */
  opened?: boolean;
}

export interface NativeRelayStats {
  connectionsOpened: number;
  connectionsOpen: number;
  bytesFromQemu: number;
  bytesToQemu: number;
}

interface CommonOptions {
  tls: TlsIdentity;
  cipherSuites?: string;
  handshakeTimeoutMs?: number;
  lingerMs?: number;
  tuning?: NativeRelayTuning;
  /** Refusals, handshake failures and per-connection counters, as the front door's workers report them. */
  onEvent?: (event: WorkerEvent, pid: number) => void;
  /** The binary; default {@link nativeRelayPath}. */
  binary?: string;
}

/** The whole stdin of a relay: its mode's fields, the identity, and the data path's knobs. */
function relayConfig(options: CommonOptions, fields: Record<string, string | number | undefined>): Buffer {
  const tuning = options.tuning ?? {};
  return encodeRelayConfig({
    ...fields,
    ca: options.tls.ca.toString(),
    cert: options.tls.cert.toString(),
    key: options.tls.key.toString(),
    crl: options.tls.crl?.toString(),
    ciphers: options.cipherSuites ?? DEFAULT_CIPHER_SUITES,
    handshake_timeout_ms: options.handshakeTimeoutMs,
    linger_ms: options.lingerMs,
    write_batch: tuning.writeBatch,
    cork: tuning.cork === undefined ? undefined : Number(tuning.cork),
    down_batch: tuning.downBatch === undefined ? undefined : Number(tuning.downBatch),
    up_buffer: tuning.upBuffer,
    sealed: tuning.sealed === undefined ? undefined : Number(tuning.sealed),
    key_update_records: tuning.keyUpdateRecords,
    key_update_requested:
      tuning.keyUpdateRequested === undefined ? undefined : Number(tuning.keyUpdateRequested),
    open: tuning.opened === undefined ? undefined : Number(tuning.opened),
  });
}

/** Keeps a relay's counters from its events; `closed` carries the totals, live connections included. */
export function countEvent(stats: NativeRelayStats, event: NativeRelayEvent): void {
  if (event.type === 'tunnel-connection-opened') {
    stats.connectionsOpened += 1;
    stats.connectionsOpen += 1;
  } else if (event.type === 'tunnel-connection-closed') {
    stats.connectionsOpen -= 1;
    stats.bytesFromQemu += event.bytesFromQemu;
    stats.bytesToQemu += event.bytesToQemu;
  } else if (event.type === 'closed') {
    stats.bytesFromQemu = event.bytesFromQemu;
    stats.bytesToQemu = event.bytesToQemu;
  }
}

/** How long the relay may take to read its configuration and listen. */
const READY_TIMEOUT_MS = 10_000;

/**
 * One migration's tunnel end as a native process (native/vmferry-relay.c): the same
 * wire protocol, checks and refusals as the front door's relay, one thread per
 * connection. The token and the private key go to it on stdin.
 */
export class NativeRelay {
  private closing: Promise<NativeRelayStats> | undefined;

  private constructor(
    private readonly child: ChildProcess,
    readonly ready: Extract<NativeRelayEvent, { type: 'ready' }>,
    private readonly exited: Promise<void>,
    /** Connections opened and bytes relayed so far (live connections count once the relay closes). */
    readonly stats: NativeRelayStats,
  ) {}

  get pid(): number {
    return this.ready.pid;
  }

  /** The destination end: a TCP port of its own, relaying admitted connections to `registration.targetPath`. */
  static async listenDestination(
    options: CommonOptions & {
      listen: { host: string; port: number };
      registration: TunnelRegistration;
      /** Roles whose certificates may open tunnels: the agent's route table (ROUTE_ROLES.tunnel). */
      tunnelRoles: readonly Role[];
    },
  ): Promise<NativeRelay> {
    const r = validateRegistration({ ...options.registration });
    return NativeRelay.start(options, {
      mode: 'destination',
      listen_host: options.listen.host,
      listen_port: options.listen.port,
      target_path: r.targetPath,
      max_connections: r.maxConnections,
      migration_id: r.migrationId,
      token: r.token,
      peer_cn: r.peerCommonName,
      tunnel_roles: options.tunnelRoles.join(','),
    });
  }

  /** The source end: a unix socket for the source QEMU, each connection relayed over TLS to `remote`. */
  static async openSource(
    options: CommonOptions & {
      listenPath: string;
      remote: { host: string; port: number };
      migrationId: string;
      token: string;
      expectedPeerCommonName: string;
      socketOwner?: SocketOwner;
    },
  ): Promise<NativeRelay> {
    validateSourceTunnel(options);
    return NativeRelay.start(options, {
      mode: 'source',
      listen_path: options.listenPath,
      socket_uid: options.socketOwner?.uid,
      socket_gid: options.socketOwner?.gid,
      remote_host: options.remote.host,
      remote_port: options.remote.port,
      migration_id: options.migrationId,
      token: options.token,
      peer_cn: options.expectedPeerCommonName,
    });
  }

  private static async start(
    options: CommonOptions,
    fields: Record<string, string | number | undefined>,
  ): Promise<NativeRelay> {
    const binary = options.binary ?? nativeRelayPath();
    const config = relayConfig(options, fields);
    const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const stats: NativeRelayStats = {
      connectionsOpened: 0,
      connectionsOpen: 0,
      bytesFromQemu: 0,
      bytesToQemu: 0,
    };
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    // 'close': exited and its stdout read to the end (the final counters are on it).
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const ready = new Promise<Extract<NativeRelayEvent, { type: 'ready' }>>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new MigrationError(`the native relay did not start within ${READY_TIMEOUT_MS} ms`));
      }, READY_TIMEOUT_MS);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new MigrationError(`cannot run the native relay ${binary}: ${err.message}`, { cause: err }));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        reject(
          new MigrationError(
            `the native relay exited before it was ready (${signal ?? `status ${code}`})${stderr === '' ? '' : `: ${stderr.trim()}`}`,
          ),
        );
      });
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.on('line', (line) => {
        const event = parseRelayEvent(line);
        if (event === undefined) return;
        if (event.type === 'ready') {
          clearTimeout(timer);
          resolve(event);
          return;
        }
        if (event.type === 'error') {
          clearTimeout(timer);
          stderr = event.reason;
          reject(new MigrationError(`the native relay failed: ${event.reason}`));
          return;
        }
        countEvent(stats, event);
        if (event.type === 'closed') return;
        options.onEvent?.(event, child.pid ?? 0);
      });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(config, () => config.fill(0));
    const readyEvent = await ready;
    return new NativeRelay(child, readyEvent, exited, stats);
  }

  /** Ends the process and with it every connection; resolves once it has exited, with its counters. */
  close(): Promise<NativeRelayStats> {
    if (this.closing !== undefined) return this.closing;
    this.closing = (async () => {
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill('SIGTERM');
        const killer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
        await this.exited;
        clearTimeout(killer);
      }
      return { ...this.stats };
    })();
    return this.closing;
  }
}
