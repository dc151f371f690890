import type { Role } from '../pki/index.js';
import type { RelayTuning } from './relay-tuning.js';
import type { TunnelRegistration } from './tunnel-policy.js';

/** PEM text of a TLS identity, as sent to workers. */
export interface PemIdentity {
  ca: string;
  cert: string;
  key: string;
  /** The CA's revocation list, when there is one. */
  crl?: string;
}

/** Where a source worker connects: the remote agent's TLS port, or its local socket. */
export type TunnelRemote = { host: string; port: number } | { socketPath: string };

export interface SourceRegistration {
  tunnelId: string;
  migrationId: string;
  token: string;
  remote: TunnelRemote;
  expectedPeerCommonName: string;
  /** Identity for the outgoing TLS connections; the pool's own when absent. */
  tls?: PemIdentity;
}

/** Messages from the main process to a worker. Replies carry the request's `id`. */
export type ToWorker =
  | {
      type: 'init';
      id: number;
      index: number;
      tls: PemIdentity;
      /** The agent's internal API and the secret its requests must carry. */
      internalApi?: { path: string; secret: string };
      /** Roles that may open tunnels (the agent's route table). */
      tunnelRoles: readonly Role[];
      /** Connections to the agent's port this worker serves at once; unset: no limit. */
      maxConnections?: number;
      tuning: RelayTuning;
    }
  | { type: 'accept-tunnel'; id: number; registration: TunnelRegistration }
  | { type: 'close-tunnel'; id: number; migrationId: string }
  | { type: 'register-source'; id: number; registration: SourceRegistration }
  /** New certificate, key, CA or CRL: new connections use them; open ones keep theirs. */
  | { type: 'reload-tls'; id: number; tls: PemIdentity }
  | { type: 'close-source'; id: number; tunnelId: string }
  | { type: 'stats'; id: number }
  | { type: 'claim-result'; id: number; granted: boolean }
  /** Carries a socket handle: a connection accepted on the frontend's port. */
  | { type: 'frontend-connection' }
  /** Carries a socket handle: a connection from the source QEMU. */
  | { type: 'source-connection'; tunnelId: string; index: number };

/** Byte counts of one tunnel (destination: by migration id; source: by tunnel id) in one worker. */
export interface TunnelCounters {
  connectionsOpened: number;
  connectionsOpen: number;
  bytesFromQemu: number;
  bytesToQemu: number;
}

export interface WorkerStatsReply {
  pid: number;
  cpuUserMicros: number;
  cpuSystemMicros: number;
  /** Page faults served without I/O (fresh buffer memory being touched). */
  minorPageFaults: number;
  bytesRelayed: number;
  connectionsOpen: number;
  destinations: Record<string, TunnelCounters>;
  sources: Record<string, TunnelCounters>;
}

/** Something a worker reports for the agent's log. */
export type WorkerEvent =
  | {
      type: 'tunnel-refused';
      migrationId: string | undefined;
      status: number;
      reason: string;
      peerCommonName: string;
      remoteAddress: string;
    }
  | { type: 'tls-handshake-failed'; reason: string; remoteAddress: string }
  | { type: 'tunnel-connection-opened'; role: 'source' | 'destination'; migrationId: string; index?: number }
  | {
      type: 'tunnel-connection-closed';
      role: 'source' | 'destination';
      migrationId: string;
      bytesFromQemu: number;
      bytesToQemu: number;
      error?: string;
      /** Native relay: whether it sealed its own TLS records on the sending direction, or left them to SSL_write. */
      sendPath?: 'sealed' | 'ssl-write';
      /** Native relay, sealed: the KeyUpdates it sent. */
      keyUpdatesSent?: number;
      /** Native relay: whether it opened the peer's TLS records itself, or left them to SSL_read. */
      receivePath?: 'opened' | 'ssl-read';
      /** Native relay, opened: the peer's KeyUpdates it applied. */
      keyUpdatesReceived?: number;
    }
  | { type: 'source-connect-failed'; migrationId: string; index: number; reason: string }
  | { type: 'proxy-failed'; reason: string }
  /** The agent's port was over its connection limit: a request answered 503, or a connection closed unread. */
  | { type: 'over-connection-limit'; open: number; dropped: boolean };

/** Messages from a worker to the main process. */
export type FromWorker =
  | { type: 'ack'; id: number; error?: string }
  | { type: 'stats'; id: number; stats: WorkerStatsReply }
  | { type: 'claim'; id: number; migrationId: string }
  | { type: 'source-established'; tunnelId: string; index: number; ok: boolean }
  | { type: 'event'; event: WorkerEvent };

export function isFromWorker(value: unknown): value is FromWorker {
  return (
    typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
  );
}

export function isToWorker(value: unknown): value is ToWorker {
  return (
    typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
  );
}
