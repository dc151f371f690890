/**
 * Every option vmferry reads, one row each: the `[libvirt]` live-migration options
 * nova has had (types, defaults and minimums from nova/conf/libvirt.py; before
 * Newton the same options lived in nova/virt/libvirt/driver.py) and vmferry's own
 * `[vmferry]` section of the same file.
 */

export type OptionType = 'bool' | 'tristate' | 'int' | 'string' | 'host' | 'choice' | 'flags';

export interface OptionSpec {
  readonly section: 'DEFAULT' | 'libvirt' | 'vmferry';
  readonly name: string;
  /**
   * bool/tristate/int/choice as oslo.config types them; `tristate` is a BoolOpt with
   * no default (unset is a third value); `flags` is nova's StrOpt holding a
   * comma-separated list of libvirt VIR_MIGRATE_* names; `host` an IP or host name.
   */
  readonly type: OptionType;
  readonly default: boolean | number | string | null;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** Choices older nova accepted that today's nova no longer does. */
  readonly retiredChoices?: readonly string[];
  readonly unit?: string;
  readonly help: string;
  readonly deprecated?: { readonly since: string; readonly reason: string };
  /** Deprecated in nova but given a meaning by vmferry: no warning when set. */
  readonly quietDeprecation?: boolean;
  /** Set when nova no longer has the option: the release that dropped it and what to do. */
  readonly removed?: { readonly in: string; readonly advice: string };
  /** How vmferry uses the value, where that differs from nova. */
  readonly vmferry?: string;
}

const MITAKA_LIVE_FLAGS =
  'VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE, VIR_MIGRATE_TUNNELLED';

export const OPTIONS = [
  {
    section: 'DEFAULT',
    name: 'max_concurrent_live_migrations',
    type: 'int',
    default: 1,
    min: 0,
    help:
      'How many live migrations a host sends at once; the rest wait in a queue, first in, first out. ' +
      '0 means unlimited (nova allows it, but not recommended).',
  },
  {
    section: 'DEFAULT',
    name: 'instances_path',
    type: 'string',
    default: null,
    help: "nova's folder of instance files; vmferry keeps local disks there too unless [vmferry] instances_path says otherwise.",
  },
  {
    section: 'DEFAULT',
    name: 'reserved_host_memory_mb',
    type: 'int',
    default: 512,
    min: 0,
    unit: 'MiB',
    help: 'Memory kept for the host itself: never promised to VMs or incoming migrations (pre-flight capacity).',
  },
  {
    section: 'libvirt',
    name: 'virt_type',
    type: 'choice',
    default: 'kvm',
    choices: ['kvm', 'lxc', 'qemu', 'parallels', 'uml', 'xen'],
    retiredChoices: ['uml', 'xen'],
    help: 'Libvirt domain type. It decides the PEER2PEER flag: xen cannot do peer-to-peer migration.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_flag',
    type: 'flags',
    default: MITAKA_LIVE_FLAGS,
    help: 'Legacy: the VIR_MIGRATE_* flags of a live migration (nova 13 default shown).',
    deprecated: {
      since: '13.0.0 (Mitaka)',
      reason: 'the flags are inferred from live_migration_tunnelled and the permit_* options',
    },
    removed: {
      in: '15.0.0 (Ocata)',
      advice: "run `vmferry config upgrade` to rewrite it into today's options",
    },
  },
  {
    section: 'libvirt',
    name: 'block_migration_flag',
    type: 'flags',
    default: `${MITAKA_LIVE_FLAGS}, VIR_MIGRATE_NON_SHARED_INC`,
    help: 'Legacy: the VIR_MIGRATE_* flags of a block migration (nova 13 default shown).',
    deprecated: {
      since: '13.0.0 (Mitaka)',
      reason: 'the flags are inferred from live_migration_tunnelled and the permit_* options',
    },
    removed: {
      in: '15.0.0 (Ocata)',
      advice: "run `vmferry config upgrade` to rewrite it into today's options",
    },
  },
  {
    section: 'libvirt',
    name: 'live_migration_tunnelled',
    type: 'tristate',
    default: null,
    help: 'True: tunnel the migration stream; False: native transport; unset: decided per migration.',
    deprecated: { since: '23.0.0 (Wallaby)', reason: 'nova recommends live_migration_with_native_tls' },
    quietDeprecation: true,
    vmferry:
      'Tri-state as nova 13 defined it (nova later defaulted it to False). Unset: native TLS when both ' +
      "hosts can do it, otherwise vmferry's multi-channel TLS tunnel; never clear text.",
  },
  {
    section: 'libvirt',
    name: 'live_migration_with_native_tls',
    type: 'bool',
    default: false,
    help: 'Use QEMU-native TLS for the migration (and disk) streams. Cannot be combined with tunnelling.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_bandwidth',
    type: 'int',
    default: 0,
    min: 0,
    unit: 'MiB/s',
    help: 'Maximum bandwidth of the migration; 0 lets the hypervisor choose.',
    vmferry:
      '0 means unlimited: vmferry sets QEMU max-bandwidth very high, since QEMU 7.2 would otherwise cap it ' +
      'at 128 MiB/s. nova sets no minimum; vmferry rejects negative values.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_downtime',
    type: 'int',
    default: 500,
    min: 100,
    unit: 'ms',
    help: 'Maximum permitted downtime at switch-over; the last downtime step.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_downtime_steps',
    type: 'int',
    default: 10,
    min: 3,
    help: 'Number of incremental steps to reach the maximum downtime.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_downtime_delay',
    type: 'int',
    default: 75,
    min: 3,
    unit: 's per GiB',
    help: 'Time between downtime steps, per GiB of RAM + disk to transfer (at least 2 GiB per device).',
  },
  {
    section: 'libvirt',
    name: 'live_migration_completion_timeout',
    type: 'int',
    default: 800,
    min: 0,
    unit: 's per GiB',
    help: 'Time allowed for the migration, per GiB of RAM + disk to transfer; 0 disables the timeout.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_timeout_action',
    type: 'choice',
    default: 'abort',
    choices: ['abort', 'force_complete'],
    help: 'What happens at the completion timeout: abort, or force_complete (post-copy if permitted, else pause).',
  },
  {
    section: 'libvirt',
    name: 'live_migration_progress_timeout',
    type: 'int',
    default: 150,
    min: 0,
    unit: 's',
    help: 'Legacy: abort when no progress was made for this long.',
    removed: {
      in: 'a later release (replaced by live_migration_timeout_action)',
      advice: 'vmferry ignores it; set [vmferry] stall_timeout instead',
    },
  },
  {
    section: 'libvirt',
    name: 'live_migration_permit_post_copy',
    type: 'bool',
    default: false,
    help: 'Allow switching to post-copy (at the completion timeout with force_complete, or on force-complete).',
  },
  {
    section: 'libvirt',
    name: 'live_migration_permit_auto_converge',
    type: 'bool',
    default: false,
    help: 'Allow CPU throttling (auto-converge); not used when post-copy is used.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_parallel_connections',
    type: 'int',
    default: 1,
    min: 1,
    max: 255,
    help: 'Number of parallel migration connections (nova 33.0.0, 2026.1); 1 disables parallel migration.',
    vmferry: 'Read as the multifd channel count when [vmferry] channels is not set.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_inbound_addr',
    type: 'host',
    default: null,
    help: 'Address other hosts use to reach this host for migration traffic.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_scheme',
    type: 'string',
    default: null,
    help: 'URI scheme of the migration connection (tcp, tls, ssh, ...); default depends on virt_type.',
  },
  {
    section: 'libvirt',
    name: 'live_migration_uri',
    type: 'string',
    default: null,
    help: 'Legacy: full migration target URI, "%s" replaced with the destination host.',
    deprecated: {
      since: '15.0.0 (Ocata)',
      reason: 'use live_migration_scheme and live_migration_inbound_addr',
    },
  },
  {
    section: 'vmferry',
    name: 'channels',
    type: 'int',
    default: 4,
    min: 1,
    max: 255,
    help:
      'Multifd channels per migration, each with its own (encrypted) connection; 1 = no multifd. ' +
      'Overrides [libvirt] live_migration_parallel_connections.',
  },
  {
    section: 'vmferry',
    name: 'permit_cleartext',
    type: 'bool',
    default: false,
    help:
      'Allow the native transport without TLS (live_migration_tunnelled = False and ' +
      'live_migration_with_native_tls = False). Off: vmferry refuses to send memory in clear text.',
  },
  {
    section: 'vmferry',
    name: 'stall_timeout',
    type: 'int',
    default: 150,
    min: 0,
    unit: 's',
    help: 'No fall in remaining memory for this long is handled like the completion timeout; 0 disables.',
  },
  {
    section: 'vmferry',
    name: 'disk_stall_timeout',
    type: 'int',
    default: 30,
    min: 0,
    unit: 's',
    help:
      'A block migration fails when nothing moves for this long while its disks are mirrored (before they are in ' +
      'step: the disk copy; after: the disk copy and the memory). Meanwhile the guest writes to those disks wait ' +
      "for the destination (write-blocking mirror): keep it well under the guest's hung-task timeout (120 s in " +
      'Linux). 0 disables.',
  },
  {
    section: 'vmferry',
    name: 'orphan_check_seconds',
    type: 'int',
    default: 60,
    min: 0,
    unit: 's',
    help:
      'A destination asks the source agent, this often, about incoming copies that were neither started nor dropped, ' +
      'and drops those the source ended or does not know (a copy left by a source that gave up while it could not ' +
      'reach this host); 0 disables.',
  },
  {
    section: 'vmferry',
    name: 'sample_interval_ms',
    type: 'int',
    default: 500,
    min: 100,
    max: 60000,
    unit: 'ms',
    help: 'How often the migration monitor polls QEMU (query-migrate) and records a sample.',
  },
  {
    section: 'vmferry',
    name: 'log_level',
    type: 'choice',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    help:
      "The agent's least severe log level. It logs JSON lines (host, vm, migration fields) to standard error, " +
      'readable lines on a terminal.',
  },
  {
    section: 'vmferry',
    name: 'max_incoming_migrations',
    type: 'int',
    default: 2,
    min: 1,
    max: 256,
    help:
      'How many migrations a host receives at once; a source asking for more gets 429 and keeps its ' +
      'migration queued, trying again.',
  },
  {
    section: 'vmferry',
    name: 'peers',
    type: 'string',
    default: null,
    help:
      'The hosts this agent may send VMs to, as https://HOST:PORT, comma-separated (`--peers`): ' +
      '`vmferry host list` shows them, drains place VMs on them, and a migration, plan or drain to ' +
      'any other address is refused. Unset: any agent with a host certificate of the deployment CA.',
  },
  {
    section: 'vmferry',
    name: 'journal_retention_days',
    type: 'int',
    default: 30,
    min: 0,
    max: 36500,
    unit: 'days',
    help:
      "How long an agent's journal keeps finished migrations (their events and samples, which charts are " +
      'drawn from); pruned at start-up and daily. 0 keeps everything.',
  },
  {
    section: 'vmferry',
    name: 'dirty_rate_sample_seconds',
    type: 'int',
    default: 3,
    min: 1,
    max: 60,
    unit: 's',
    help: 'How long the pre-migration forecast samples the guest dirty rate (calc-dirty-rate).',
  },
  {
    section: 'vmferry',
    name: 'agent_name',
    type: 'string',
    default: null,
    help: "This host's agent name: the CN of its certificate (default: that CN; the agent refuses to start under another name). `vmferry agent --name` overrides it.",
  },
  {
    section: 'vmferry',
    name: 'listen',
    type: 'string',
    default: '0.0.0.0:7700',
    help: 'HOST:PORT of the agent: its API and tunnel endpoint, the one port between hosts (`--listen`).',
  },
  {
    section: 'vmferry',
    name: 'state_dir',
    type: 'string',
    default: '/var/lib/vmferry',
    help: "The agent's VM run directories, journal and sockets (`--state-dir`).",
  },
  {
    section: 'vmferry',
    name: 'instances_path',
    type: 'string',
    default: null,
    help:
      'Where the images of local disks are: a VM spec names a local disk by its path under this folder, and ' +
      "block migration creates the destination's copy under the destination's own (`--instances-path`; " +
      "default: nova's [DEFAULT] instances_path when set, else STATE_DIR/instances).",
  },
  {
    section: 'vmferry',
    name: 'tls_dir',
    type: 'string',
    default: null,
    help: "This host's identity from `vmferry ca issue`: ca.pem, cert.pem, key.pem (`--tls-dir`).",
  },
  {
    section: 'vmferry',
    name: 'accel',
    type: 'choice',
    default: 'auto',
    choices: ['auto', 'kvm', 'tcg'],
    help: 'Accelerator; auto uses KVM only when a probe guest really runs under it (`--accel`).',
  },
  {
    section: 'vmferry',
    name: 'workers',
    type: 'int',
    default: 0,
    min: 0,
    max: 256,
    help: 'Processes for TLS and tunnel relaying; 0 = one per 2 CPUs (the other half is left to QEMU).',
  },
  {
    section: 'vmferry',
    name: 'tunnel_relay',
    type: 'choice',
    default: 'auto',
    choices: ['auto', 'native', 'node'],
    help:
      "Which relay carries this agent's end of tunnelled migrations: `native` (native/vmferry-relay.c, one " +
      'process per migration, built by scripts/setup.mjs), `node` (the TypeScript relay of the front door) or ' +
      '`auto`, the default (native when it is built, else node: the native relay costs 1.4-1.8x less CPU per ' +
      'GiB, see the README). The two speak the same protocol, so the hosts of a migration may differ.',
  },
  {
    section: 'vmferry',
    name: 'image_dirs',
    type: 'string',
    default: '/var/lib/vmferry/images',
    help:
      'Comma-separated directories VM kernels, initrds and read-only disk images must lie in (after symlinks ' +
      'are resolved); a VM spec naming a file elsewhere is refused. Readable by qemu_user.',
  },
  {
    section: 'vmferry',
    name: 'disk_dirs',
    type: 'string',
    default: '/var/lib/vmferry/disks',
    help:
      'Comma-separated directories writable VM disks must lie in (after symlinks are resolved). The agent gives ' +
      'the disks of the VMs it starts to qemu_user.',
  },
  {
    section: 'vmferry',
    name: 'qemu_user',
    type: 'string',
    default: 'vmferry-qemu',
    help:
      'The user QEMU runs as when the agent runs as root (scripts/setup.mjs creates it); QEMU never runs as root. ' +
      'Ignored when the agent runs as another user: QEMU runs as that user.',
  },
  {
    section: 'vmferry',
    name: 'max_vm_memory_mib',
    type: 'int',
    default: 0,
    min: 0,
    unit: 'MiB',
    help:
      "Guest memory all VMs on this host may have together, incoming ones included; 0 = 90% of the host's RAM. " +
      'A VM beyond it is refused (429), as is one with more vCPUs than the host has CPUs.',
  },
  {
    section: 'vmferry',
    name: 'max_connections',
    type: 'int',
    default: 256,
    min: 4,
    max: 65536,
    help:
      "Connections the agent's port serves at once (API calls; tunnel connections of prepared migrations are " +
      'not refused); beyond it requests get 503, and beyond twice it connections are closed unread.',
  },
  {
    section: 'vmferry',
    name: 'test_mode',
    type: 'bool',
    default: false,
    help:
      "For vmferry's own tests only (`vmferry agent --test-mode`): VM specs may map guest RAM from a shared file " +
      '(memoryBackend file). The agent warns at start-up.',
  },
  {
    section: 'vmferry',
    name: 'postcopy_max_exposure',
    type: 'int',
    default: 120,
    min: 1,
    unit: 's',
    help:
      'Post-copy is refused when sending the whole guest memory at live_migration_bandwidth would take ' +
      'longer than this: while post-copy runs, losing the link loses the VM.',
  },
] as const satisfies readonly OptionSpec[];

type Row = (typeof OPTIONS)[number];

type ValueOf<R> = R extends { type: 'bool' }
  ? boolean
  : R extends { type: 'tristate' }
    ? boolean | null
    : R extends { type: 'int' }
      ? number
      : R extends { type: 'choice'; choices: readonly (infer C)[] }
        ? C
        : R extends { type: 'flags' }
          ? string
          : string | null;

/** The typed value of every option, by name. */
export type OptionValues = { [R in Row as `${R['section']}.${R['name']}`]: ValueOf<R> };

/** `section.name`, the form oslo.config's documentation uses (`libvirt.virt_type`). */
export type OptionName = keyof OptionValues;

export const OPTION_NAMES: readonly OptionName[] = OPTIONS.map((o) => `${o.section}.${o.name}` as OptionName);

const BY_NAME = new Map<string, OptionSpec>(OPTIONS.map((o) => [`${o.section}.${o.name}`, o]));

/** The table row of `section.name`, or undefined. */
export function findOption(qualifiedName: string): OptionSpec | undefined {
  return BY_NAME.get(qualifiedName);
}

export function qualifiedName(spec: OptionSpec): OptionName {
  return `${spec.section}.${spec.name}` as OptionName;
}
