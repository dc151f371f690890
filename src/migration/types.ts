import type { MigrationSettings, Transport } from '../policy/index.js';
import type { DiskSample } from '../block/index.js';
import type { VmSpec } from '../qemu/index.js';

/** A migration's life, as the journal records it. */
export const MIGRATION_STATES = [
  'queued',
  'pending',
  'preparing',
  'migrating',
  'postcopy',
  'completing',
  'completed',
  'failed',
  'cancelled',
] as const;
export type MigrationState = (typeof MIGRATION_STATES)[number];

/** A migration in one of these states is over; its state never changes again. */
export const TERMINAL_MIGRATION_STATES = ['completed', 'failed', 'cancelled'] as const;
export type TerminalMigrationState = (typeof TERMINAL_MIGRATION_STATES)[number];

export function isTerminalMigrationState(state: string): state is TerminalMigrationState {
  return (TERMINAL_MIGRATION_STATES as readonly string[]).includes(state);
}

/** One look at QEMU's progress (query-migrate): what the driver acts on, the journal keeps and the CLI shows. */
export interface MigrationSample {
  /** When it was taken, milliseconds since the Unix epoch. */
  time: number;
  /** Milliseconds since QEMU started sending. */
  elapsedMs: number;
  status: string;
  transferredBytes: number;
  remainingBytes: number;
  totalBytes: number;
  /** Guest dirty rate in bytes/s as QEMU measures it (0 before the first pass ends). */
  dirtyRateBps: number;
  throughputMbps: number;
  /** QEMU's dirty-sync-count: the pass over guest memory. */
  pass: number;
  expectedDowntimeMs: number;
  cpuThrottlePct: number;
  downtimeLimitMs: number | undefined;
  /** Block migration: each copied disk at that moment (absent when no disk is copied). */
  disks?: DiskSample[] | undefined;
}

/** What the destination agent is asked to prepare. */
export interface IncomingRequest {
  migrationId: string;
  spec: VmSpec;
  /** The source's plan for it: how the stream travels, and the rest for the destination's record. */
  settings: MigrationSettings;
  /** The source host's agent name, for logs and tunnel authorization. */
  sourceHost: string;
  /** The accelerator the guest runs under on the source: the destination refuses another. */
  sourceAccelerator?: 'kvm' | 'tcg';
  /** Block migration: the source's instances_path, where a copied top's backing image is looked for (mapped to this host's). */
  sourceInstancesPath?: string;
  /** The source's QEMU version: the destination refuses to be older. */
  sourceQemuVersion?: string;
  /**
   * The source agent's API address (https://HOST:PORT), so the destination can ask
   * it about a copy nobody finished; absent when the source listens on a wildcard.
   */
  sourceAddress?: string;
}

/** The destination's answer: where the source QEMU must send the stream. */
export interface IncomingReply {
  /** Native transport: the destination QEMU's `tcp:HOST:PORT`. */
  uri?: string;
  /** Tunnelled transport: the one-time token the destination agent accepts tunnel connections with. */
  tunnelToken?: string;
  /** Naive tunnel only: the destination agent's extra port for it. */
  naivePort?: number;
  /** Tunnelled through the destination's native relay: its port (absent: the agent's own port). */
  relayPort?: number;
  /** The destination agent's certificate name (for TLS host checks). */
  destinationHost: string;
  /**
   * Block migration: where its QEMU's NBD server takes the disks. Native: its TCP
   * address. Tunnelled: through the agent's tunnel, with the same token as the stream.
   */
  disks?: { type: 'inet'; host: string; port: number } | { type: 'tunnel' };
}

/** The guest's own verdict after the migration, from its heartbeats on the destination. */
export interface GuestVerdict {
  state: 'ok' | 'corrupt' | 'stalled' | 'unknown';
  reason: string;
}

/** The end-of-migration report (`vmferry migrate` prints it; `--json` prints this object). */
export interface MigrationReport {
  id: string;
  vm: string;
  from: string;
  to: string;
  status: TerminalMigrationState;
  transport: Transport;
  tls: boolean;
  channels: number;
  postCopy: boolean;
  autoConverge: boolean;
  reasons: string[];
  /** RAM bytes QEMU sent. */
  bytes: number;
  /** From the start of sending to QEMU's completion: what `gbps` is measured over. */
  seconds: number;
  /** Including the forecast, the destination's preparation and the hand-over. */
  totalSeconds: number;
  gbps: number;
  downtimeMs: number | undefined;
  iterations: number;
  maxCpuThrottlePct: number;
  /** Seconds after the start at which post-copy was switched on, if it was. */
  postcopySwitchSeconds: number | undefined;
  /** Set when the guest was paused to force completion: how long it stayed paused (ms). */
  forcedPauseMs: number | undefined;
  /** What ended the migration early or forced it (timeout, stall, operator), and forecast warnings. */
  events: string[];
  /** The pre-migration forecast, in one sentence (undefined when none was made). */
  forecast: string | undefined;
  guest: GuestVerdict['state'];
  guestDetail: string;
  error: string | undefined;
  /** Block migration: what each copied disk took (bytes the mirror copied, rewrites included). */
  disks?: { disk: number; sync: 'full' | 'top'; bytes: number }[];
  /** Block migration: seconds from the start of the disk copies until every disk was in step. */
  diskSeconds?: number;
  /**
   * Set when the destination refused to prepare because it receives as many
   * migrations as it may (429): nothing was started there, the migration may wait and
   * try again.
   */
  destinationBusy?: boolean;
}
