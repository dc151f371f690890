import type { DowntimeStep } from './downtime-steps.js';

/** How guest memory travels: QEMU to QEMU, or through vmferry's agents. */
export type Transport = 'native' | 'tunnelled';

/** Tunnelled only: vmferry's relay (`multi`), or one connection through one thread (`naive`: the benchmark baseline). */
export type TunnelMode = 'multi' | 'naive';

/** Who encrypts the stream between the hosts. */
export type Encryption = 'qemu-tls' | 'agent-tls' | 'none';

/** nova's `live_migration_timeout_action`. */
export type TimeoutAction = 'abort' | 'force_complete';

export type PlanDecision =
  | 'transport'
  | 'tls'
  | 'tunnel'
  | 'channels'
  | 'postCopy'
  | 'autoConverge'
  | 'flags'
  | 'dataSize'
  | 'downtimeSteps'
  | 'completionTimeout'
  | 'timeoutAction'
  | 'bandwidth'
  | 'stallTimeout'
  | 'relayWorkers';

/** Why the plan decided something; names the option or capability (or override) that drove it. */
export interface PlanReason {
  readonly decision: PlanDecision;
  readonly option?: string | undefined;
  readonly capability?: string | undefined;
  readonly message: string;
}

/** What a decide* function returns: the value and why. */
export interface Decided<T> {
  readonly value: T;
  readonly reasons: readonly PlanReason[];
}

/** Per-migration choices an operator may pass to `vmferry migrate` (and the API); they beat the configuration. */
export interface MigrationOverrides {
  transport?: Transport;
  /** false asks for clear text (refused unless [vmferry] permit_cleartext); true: encrypted or refuse. */
  tls?: boolean;
  tunnel?: TunnelMode;
  channels?: number;
  bandwidthMiBps?: number;
  completionTimeoutSeconds?: number;
  timeoutAction?: TimeoutAction;
  autoConverge?: boolean;
  postCopy?: boolean;
  stallSeconds?: number;
}

/** How one migration is carried out: the migration plan, reduced to what the drivers act on. */
export interface MigrationSettings {
  transport: Transport;
  /** Encrypted: QEMU's own TLS for native, the agents' TLS for tunnelled. */
  tls: boolean;
  /** multifd channels; 1 means a single stream without multifd. */
  channels: number;
  tunnel: TunnelMode;
  /** MiB/s; 0 means unlimited. */
  bandwidthMiBps: number;
  /** QEMU's max-bandwidth for it, bytes/s: never QEMU's own 128 MiB/s default by accident. */
  maxBandwidthBytes: number;
  downtimeSteps: readonly DowntimeStep[];
  /** 0 disables the completion timeout. */
  completionTimeoutSeconds: number;
  timeoutAction: TimeoutAction;
  postCopy: boolean;
  autoConverge: boolean;
  /** No fall in remaining memory for this long counts as a timeout; 0 disables. */
  stallSeconds: number;
  /** Why each of the above was chosen, for the report. */
  reasons: string[];
}
