import { UsageError } from '../errors.js';

/**
 * TLS 1.3 cipher suites in order of preference. On this project's hosts
 * (x86-64 with AES-NI, Node 20's OpenSSL 3.0) AES-256-GCM costs the same as
 * AES-128-GCM per byte through the relay on both sides and ChaCha20-Poly1305 more
 * to receive (bench/tunnel-synthetic.ts --suites all, bench/tunnel-ciphers.ts;
 * src/transport/README.md), so the stronger AES wins. The server's order decides
 * (honorCipherOrder).
 */
export const DEFAULT_CIPHER_SUITES =
  'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';

/** Knobs of the relay data path; one row each, with the reason for its default. */
export interface RelayTuning {
  /** TLS 1.3 suites in order of preference (OpenSSL names, colon-separated). */
  cipherSuites: string;
  /** Bytes a socket may queue for writing before its source is paused (back-pressure). */
  writeHighWaterMark: number;
  /** Coalesce the chunks decrypted in one event-loop turn into one writev to QEMU's socket. */
  batchWrites: boolean;
  /**
   * Coalesce the chunks read from QEMU in one event-loop turn into one TLS write. Off: Node
   * already reads 64 KiB (four full records) at a time, and batching measured no gain.
   */
  batchTlsWrites: boolean;
  /** TCP_NODELAY on tunnel connections. */
  noDelay: boolean;
  /** After one side ends, how long the other may take to finish before both are destroyed. */
  lingerMs: number;
  /** Connect, TLS handshake and the 101 reply must finish within this time. */
  handshakeTimeoutMs: number;
  /**
   * Scheduling priority (nice) of the worker processes; below 0 needs root.
   * A relay competes for CPU with the QEMUs it serves; see bench/tunnel-throughput.ts.
   */
  workerNice: number;
}

interface TuningRow<K extends keyof RelayTuning> {
  name: K;
  default: RelayTuning[K];
  check: (value: unknown) => boolean;
  expect: string;
}

const isInt = (min: number, max: number) => (v: unknown) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

const ROWS: { [K in keyof RelayTuning]: TuningRow<K> } = {
  cipherSuites: {
    name: 'cipherSuites',
    default: DEFAULT_CIPHER_SUITES,
    check: (v) => typeof v === 'string' && /^TLS_[A-Z0-9_]+(:TLS_[A-Z0-9_]+)*$/.test(v),
    expect: 'colon-separated TLS 1.3 suite names such as TLS_AES_128_GCM_SHA256',
  },
  writeHighWaterMark: {
    name: 'writeHighWaterMark',
    default: 1024 * 1024,
    check: isInt(16 * 1024, 64 * 1024 * 1024),
    expect: 'an integer from 16 KiB to 64 MiB',
  },
  batchWrites: {
    name: 'batchWrites',
    default: true,
    check: (v) => typeof v === 'boolean',
    expect: 'a boolean',
  },
  batchTlsWrites: {
    name: 'batchTlsWrites',
    default: false,
    check: (v) => typeof v === 'boolean',
    expect: 'a boolean',
  },
  noDelay: { name: 'noDelay', default: true, check: (v) => typeof v === 'boolean', expect: 'a boolean' },
  lingerMs: {
    name: 'lingerMs',
    default: 5000,
    check: isInt(0, 600_000),
    expect: 'an integer from 0 to 600000',
  },
  handshakeTimeoutMs: {
    name: 'handshakeTimeoutMs',
    default: 15_000,
    check: isInt(100, 600_000),
    expect: 'an integer from 100 to 600000',
  },
  workerNice: { name: 'workerNice', default: 0, check: isInt(-20, 19), expect: 'an integer from -20 to 19' },
};

/** The effective tuning: defaults overridden by `given`; a bad value throws naming the option. */
export function resolveTuning(given: Partial<RelayTuning> = {}): RelayTuning {
  const out = {} as Record<string, unknown>;
  for (const row of Object.values(ROWS) as TuningRow<keyof RelayTuning>[]) {
    const value = given[row.name];
    if (value === undefined) {
      out[row.name] = row.default;
      continue;
    }
    if (!row.check(value)) {
      throw new UsageError(
        `transport option ${row.name} must be ${row.expect}, got ${JSON.stringify(value)}`,
      );
    }
    out[row.name] = value;
  }
  for (const name of Object.keys(given)) {
    if (!(name in ROWS)) throw new UsageError(`unknown transport option ${name}`);
  }
  return out as unknown as RelayTuning;
}

/**
 * Delay before restarting a worker that died: immediate the first time, then
 * doubling with each death within the last minute, capped at 5 s, so a worker
 * that crashes at start does not spin.
 */
export function restartDelayMs(recentDeaths: number): number {
  if (recentDeaths <= 1) return 0;
  return Math.min(5000, 100 * 2 ** (recentDeaths - 2));
}
