import type { DowntimeStep } from './downtime-steps.js';
import type { TunnelRelayKind } from '../qemu/index.js';

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
  | 'diskStallTimeout'
  | 'relayWorkers'
  | 'disks';

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
  /** The relay at both ends of a tunnelled stream, instead of what each agent runs by default. */
  relay?: TunnelRelayKind;
  channels?: number;
  bandwidthMiBps?: number;
  completionTimeoutSeconds?: number;
  timeoutAction?: TimeoutAction;
  autoConverge?: boolean;
  postCopy?: boolean;
  stallSeconds?: number;
  /** Block migration: nothing moved for this long while the disks are mirrored fails it; 0 = off. */
  diskStallSeconds?: number;
  /** Block migration: copy every local disk, or decide per disk from what the destination sees. */
  block?: BlockMode;
  /** Keep the source's images of copied disks after the VM moved (they are removed by default). */
  keepSourceDisks?: boolean;
}

/** How one migration is carried out: the migration plan, reduced to what the drivers act on. */
export interface MigrationSettings {
  transport: Transport;
  /** Encrypted: QEMU's own TLS for native, the agents' TLS for tunnelled. */
  tls: boolean;
  /** multifd channels; 1 means a single stream without multifd. */
  channels: number;
  tunnel: TunnelMode;
  /** The relay both ends must run for this migration (an override); absent: each agent's own. */
  relay?: TunnelRelayKind;
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
  /** Block migration: how each disk of the VM gets there (absent for a live migration). */
  disks?: DiskPlan[];
  /** Block migration: keep the source's images of copied disks after the VM moved. */
  keepSourceDisks?: boolean;
  /** Block migration: nothing moved for this long while the disks are mirrored fails it; 0 disables. */
  diskStallSeconds?: number;
}

/** `--block`: copy every local disk (`all`), or decide each disk from what the destination sees (`auto`). */
export type BlockMode = 'all' | 'auto';

/** An image file as two hosts compare it: format, sizes and the fingerprint of its first and last MiB. */
export interface ImageFingerprint {
  format: string;
  virtualSize: number;
  sizeBytes: number;
  fingerprint: string;
}

/** What the source knows of one of the VM's disks before it migrates. */
export interface SourceDisk {
  /** Its index in the VM spec. */
  disk: number;
  storage: 'shared' | 'local';
  /** As the spec names it (relative to instances_path for a local disk). */
  path: string;
  format: 'raw' | 'qcow2';
  /** The size the guest sees, bytes. */
  virtualSize: number;
  /** What its image holds on the host's storage, bytes (qemu-img's actual size; the backing image's not counted). */
  allocatedBytes?: number | undefined;
  /** qcow2 on a backing image: the name its header gives, and that image's identity. */
  backing?: { name: string; format: string; identity: ImageFingerprint } | undefined;
}

/** What the destination sees for one disk: its answer to the pre-flight disk check. */
export interface DestinationDiskView {
  disk: number;
  /** A file is at the disk's path there. */
  exists: boolean;
  /** It is the source's own file (the folder is shared: the source's probe file is there). */
  sameFile: boolean;
  /** Why it is, or is not, the same file. */
  why: string;
  /** For a disk on a backing image: whether the destination has that image, where a copy of the top would name it. */
  backing?: { present: boolean; why: string } | undefined;
}

/** How one disk gets to the destination: the destination opens the same file, or gets a copy. */
export interface DiskPlan {
  disk: number;
  action: 'shared' | 'copy';
  /** A copy: `full` into a standalone image, `top` only the top image over the destination's own backing image. */
  sync?: 'full' | 'top' | undefined;
  format: 'raw' | 'qcow2';
  virtualSize: number;
  /** A copy: about how many bytes it moves (what the images hold, not their virtual size), for the forecast. */
  copyBytes?: number | undefined;
  /** `top` only: the backing image the new top names, as the source's top names it, and its identity. */
  backing?: { name: string; format: string; identity: ImageFingerprint } | undefined;
  /** Why, in a sentence. */
  reason: string;
}
