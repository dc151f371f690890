import { ConfigError } from '../errors.js';
import { nearest } from './edit-distance.js';
import { isSet, type OptionSource, type ResolvedOption, type ResolvedOptions } from './resolve-options.js';
import type { ConfigWarning } from './type-options.js';

/** libvirt's virDomainMigrateFlags names, with what each one asks libvirt to do. */
export const MIGRATE_FLAGS: Readonly<Record<string, string>> = {
  VIR_MIGRATE_LIVE:
    'migrate while the guest keeps running (without it the guest is paused for the whole migration)',
  VIR_MIGRATE_PEER2PEER: 'the source libvirtd drives the migration and talks to the destination directly',
  VIR_MIGRATE_TUNNELLED: 'carry the migration stream over the libvirtd connection',
  VIR_MIGRATE_PERSIST_DEST: 'define the domain persistently on the destination',
  VIR_MIGRATE_UNDEFINE_SOURCE: 'remove the domain definition from the source after success',
  VIR_MIGRATE_PAUSED: 'leave the guest paused on the destination',
  VIR_MIGRATE_NON_SHARED_DISK: 'copy the full disks (storage not shared)',
  VIR_MIGRATE_NON_SHARED_INC: 'copy the disks incrementally over a shared base image (block migration)',
  VIR_MIGRATE_CHANGE_PROTECTION:
    'refuse configuration changes during the migration (libvirt sets it itself when it can)',
  VIR_MIGRATE_UNSAFE:
    'migrate even when libvirt considers it unsafe, for example because of disk cache modes',
  VIR_MIGRATE_OFFLINE: 'migrate only the definition of a stopped domain',
  VIR_MIGRATE_COMPRESSED: 'compress the migration data',
  VIR_MIGRATE_ABORT_ON_ERROR: 'abort when a disk I/O error happens during the migration',
  VIR_MIGRATE_AUTO_CONVERGE: 'throttle the guest CPUs when the migration does not converge',
  VIR_MIGRATE_RDMA_PIN_ALL: 'pin all guest memory for RDMA transport',
  VIR_MIGRATE_POSTCOPY: 'allow switching to post-copy',
  VIR_MIGRATE_TLS: 'encrypt the migration with QEMU-native TLS',
  VIR_MIGRATE_PARALLEL: 'send over several parallel connections (QEMU multifd)',
  VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES: 'make guest disk writes synchronous with the disk copy',
  VIR_MIGRATE_POSTCOPY_RESUME: 'resume a failed post-copy migration',
  VIR_MIGRATE_ZEROCOPY: 'send multifd data with zero-copy',
  VIR_MIGRATE_DIRTY_LIMIT: 'limit the guest dirty rate (dirty-limit) instead of throttling CPUs',
};

const FLAG_NAMES = Object.keys(MIGRATE_FLAGS);

export type FlagMode = 'legacy' | 'current';

/** The VIR_MIGRATE_* sets nova's libvirt driver would use for a configuration. */
export interface MigrationFlags {
  /** `legacy`: a live_migration_flag/block_migration_flag list is set (nova 13/14 rules). */
  readonly mode: FlagMode;
  /** Sorted flag names. */
  readonly live: readonly string[];
  readonly block: readonly string[];
  readonly warnings: readonly ConfigWarning[];
  /** Combinations nova refuses to start with. */
  readonly errors: readonly ConfigError[];
}

function lineOf(source: OptionSource): number | undefined {
  return source.kind === 'file' ? source.line : undefined;
}

/**
 * Reads a legacy flag list as nova 13's `_parse_migration_flags.str2sum` did: split on
 * commas, strip each item, keep empty raw items out; a name that is not a libvirt
 * VIR_MIGRATE_* constant is ignored with a warning (nova: "Ignoring unknown libvirt
 * live migration flag"). Names are case-sensitive (nova used getattr(libvirt, name)).
 */
export function parseFlagList(
  text: string,
  option: string,
  line?: number,
): { flags: Set<string>; warnings: ConfigWarning[] } {
  const flags = new Set<string>();
  const warnings: ConfigWarning[] = [];
  for (const raw of text.split(',')) {
    if (raw === '') continue;
    const name = raw.trim();
    if (name in MIGRATE_FLAGS) {
      flags.add(name);
      continue;
    }
    const guess = name === '' ? undefined : nearest(name, FLAG_NAMES);
    warnings.push({
      option,
      line,
      message:
        `ignoring unknown libvirt migration flag ${JSON.stringify(name)} in ${option}` +
        (guess === undefined ? '' : `; did you mean ${guess}?`),
    });
  }
  return { flags, warnings };
}

class FlagSet {
  readonly flags: Set<string>;
  constructor(
    flags: Iterable<string>,
    readonly option: string,
    readonly line: number | undefined,
    private readonly warnings: ConfigWarning[],
  ) {
    this.flags = new Set(flags);
  }

  has(flag: string): boolean {
    return this.flags.has(flag);
  }

  add(flag: string, why?: string): void {
    if (this.flags.has(flag)) return;
    this.flags.add(flag);
    if (why !== undefined) {
      this.warnings.push({
        option: this.option,
        line: this.line,
        message: `adding ${flag} to ${this.option}: ${why}`,
      });
    }
  }

  remove(flag: string, why: string): void {
    if (!this.flags.has(flag)) return;
    this.flags.delete(flag);
    this.warnings.push({
      option: this.option,
      line: this.line,
      message: `removing ${flag} from ${this.option}: ${why}`,
    });
  }

  sorted(): string[] {
    return [...this.flags].sort();
  }
}

function legacyFlags(o: ResolvedOptions, warnings: ConfigWarning[]): { live: FlagSet; block: FlagSet } {
  const liveOpt = o['libvirt.live_migration_flag'];
  const blockOpt = o['libvirt.block_migration_flag'];
  const liveParsed = parseFlagList(liveOpt.value, 'libvirt.live_migration_flag', lineOf(liveOpt.source));
  const blockParsed = parseFlagList(blockOpt.value, 'libvirt.block_migration_flag', lineOf(blockOpt.source));
  warnings.push(...liveParsed.warnings, ...blockParsed.warnings);
  const live = new FlagSet(liveParsed.flags, 'libvirt.live_migration_flag', lineOf(liveOpt.source), warnings);
  const block = new FlagSet(
    blockParsed.flags,
    'libvirt.block_migration_flag',
    lineOf(blockOpt.source),
    warnings,
  );

  // Where these rules come from: nova 13's driver.py (_parse_migration_flags,
  // _check_block_migration_flags, _check_live_migration_flags,
  // _handle_live_migration_tunnelled) is not in vmferry's reference index, so they
  // follow the patch series' own description (Mark McLoughlin, openstack-dev,
  // 2016-01-04), nova 14's option definitions (nova/conf/libvirt.py at be59c19) and the
  // later driver tests (test_parse_migration_flags_p2p_xen). Re-check against the
  // stable/mitaka driver when it is at hand.
  //
  // nova 13 driver.py _check_block_migration_flags: NON_SHARED_INC decides whether a
  // migration copies disks, so it must be in the block list and never in the live list.
  live.remove(
    'VIR_MIGRATE_NON_SHARED_INC',
    'it would turn every live migration into a block migration (nova 13 removed it too)',
  );
  block.add(
    'VIR_MIGRATE_NON_SHARED_INC',
    'without it every block migration would be a live migration that copies no disk (nova 13 added it too)',
  );

  applyPerListRules(o, live, block);

  // nova 14 (Newton, which still read the lists) added the permit_* options on top.
  applyPostCopyAndAutoConverge(o, live, block, warnings);

  warnIgnoredByLegacyLists(o, warnings);
  return { live, block };
}

/** nova 13's per-list rules: peer-to-peer, UNDEFINE_SOURCE and PERSIST_DEST, then live_migration_tunnelled. */
function applyPerListRules(o: ResolvedOptions, live: FlagSet, block: FlagSet): void {
  // nova 13 driver.py _check_live_migration_flags (per list): peer-to-peer is required
  // for kvm/qemu ("direct migration is not supported by the connection driver") and
  // unsupported for xen; UNDEFINE_SOURCE is required and PERSIST_DEST refused, because
  // nova persists the domain on the destination itself and expects libvirt to remove it
  // from the source (openstack-dev, "Deprecating the live_migration_flag and
  // block_migration_flag config options", 2016-01).
  const virtType = o['libvirt.virt_type'].value;
  for (const set of [live, block]) {
    if (virtType === 'xen') {
      set.remove('VIR_MIGRATE_PEER2PEER', 'the xen virt type does not support peer-to-peer migration');
    } else {
      set.add(
        'VIR_MIGRATE_PEER2PEER',
        `the ${virtType} virt type does not support direct (unmanaged) migration`,
      );
    }
    set.add('VIR_MIGRATE_UNDEFINE_SOURCE', 'without it migrated VMs would remain defined on the source host');
    set.remove('VIR_MIGRATE_PERSIST_DEST', 'nova persists the VM on the destination host itself');
  }

  // nova 13 driver.py _handle_live_migration_tunnelled: an explicit
  // live_migration_tunnelled wins over the lists; unset (None) leaves them alone.
  const tunnelled = o['libvirt.live_migration_tunnelled'].value;
  for (const set of [live, block]) {
    if (tunnelled === true) set.add('VIR_MIGRATE_TUNNELLED', 'live_migration_tunnelled is True');
    if (tunnelled === false) set.remove('VIR_MIGRATE_TUNNELLED', 'live_migration_tunnelled is False');
  }
}

/** Today's options no nova that read the legacy lists knew: set, they change nothing, and say so. */
function warnIgnoredByLegacyLists(o: ResolvedOptions, warnings: ConfigWarning[]): void {
  for (const name of [
    'libvirt.live_migration_with_native_tls',
    'libvirt.live_migration_parallel_connections',
  ] as const) {
    const opt = o[name] as ResolvedOption<unknown>;
    if (isSet(opt)) {
      warnings.push({
        option: name,
        line: lineOf(opt.source),
        message:
          `${name} does not change the flags of a file that still uses the legacy flag lists ` +
          '(no nova that read them knew it); run `vmferry config upgrade`',
      });
    }
  }
}

function applyPostCopyAndAutoConverge(
  o: ResolvedOptions,
  live: FlagSet,
  block: FlagSet,
  warnings: ConfigWarning[],
): void {
  const postCopy = o['libvirt.live_migration_permit_post_copy'];
  const autoConverge = o['libvirt.live_migration_permit_auto_converge'];
  for (const set of [live, block]) {
    // driver.py _handle_live_migration_post_copy
    if (postCopy.value) set.add('VIR_MIGRATE_POSTCOPY');
    // driver.py _handle_live_migration_auto_converge: post-copy wins.
    if (autoConverge.value && !set.has('VIR_MIGRATE_POSTCOPY')) set.add('VIR_MIGRATE_AUTO_CONVERGE');
  }
  if (autoConverge.value && (live.has('VIR_MIGRATE_POSTCOPY') || block.has('VIR_MIGRATE_POSTCOPY'))) {
    warnings.push({
      option: 'libvirt.live_migration_permit_auto_converge',
      line: lineOf(autoConverge.source),
      message:
        'auto-converge will not be used: post-copy is permitted and wins over auto-converge (as in nova)',
    });
  }
}

function currentFlags(o: ResolvedOptions, warnings: ConfigWarning[]): { live: FlagSet; block: FlagSet } {
  // nova driver.py _prepare_migration_flags
  const base = ['VIR_MIGRATE_LIVE', 'VIR_MIGRATE_UNDEFINE_SOURCE', 'VIR_MIGRATE_PERSIST_DEST'];
  if (o['libvirt.virt_type'].value !== 'xen') base.push('VIR_MIGRATE_PEER2PEER');
  const live = new FlagSet(base, 'live', undefined, warnings);
  const block = new FlagSet([...base, 'VIR_MIGRATE_NON_SHARED_INC'], 'block', undefined, warnings);
  for (const set of [live, block]) {
    // _handle_live_migration_tunnelled: only an explicit True adds the flag.
    if (o['libvirt.live_migration_tunnelled'].value === true) set.add('VIR_MIGRATE_TUNNELLED');
    // _handle_native_tls (nova also checks libvirt >= 4.4.0 / QEMU >= 2.11.0 on the host)
    if (o['libvirt.live_migration_with_native_tls'].value) set.add('VIR_MIGRATE_TLS');
  }
  applyPostCopyAndAutoConverge(o, live, block, warnings);
  const parallel = o['libvirt.live_migration_parallel_connections'];
  if (parallel.value > 1) {
    // nova 33.0.0: parallel connections use VIR_MIGRATE_PARALLEL with the count as a parameter.
    for (const set of [live, block]) set.add('VIR_MIGRATE_PARALLEL');
    if (o['libvirt.live_migration_permit_post_copy'].value) {
      warnings.push({
        option: 'libvirt.live_migration_parallel_connections',
        line: lineOf(parallel.source),
        message:
          'parallel connections together with post-copy: QEMU before 10.1 cannot combine multifd with ' +
          'post-copy (nova 33 refuses it there); `vmferry plan` chooses one and says why',
      });
    }
  }
  return { live, block };
}

/**
 * nova's flag computation as a pure function of the resolved options.
 *
 * With a legacy list set (`legacy` mode), the lists are read and corrected as nova 13
 * (Mitaka) did, a list that is not set taking nova 13's default; each correction is a
 * warning naming flag, option and why. Without them (`current` mode), today's driver
 * rules: LIVE, PEER2PEER (not for xen), UNDEFINE_SOURCE, PERSIST_DEST (+ NON_SHARED_INC
 * for block), then TUNNELLED when live_migration_tunnelled is True (unset adds nothing),
 * TLS for native TLS, POSTCOPY when permitted, AUTO_CONVERGE when permitted and post-copy
 * is not, PARALLEL for more than one parallel connection.
 *
 * Tunnelled together with native TLS is an error in both modes, as in nova's init_host.
 */
export function computeMigrationFlags(options: ResolvedOptions): MigrationFlags {
  const warnings: ConfigWarning[] = [];
  const errors: ConfigError[] = [];
  const legacy =
    isSet(options['libvirt.live_migration_flag']) || isSet(options['libvirt.block_migration_flag']);
  const { live, block } = legacy ? legacyFlags(options, warnings) : currentFlags(options, warnings);

  const tunnelled = options['libvirt.live_migration_tunnelled'];
  const nativeTls = options['libvirt.live_migration_with_native_tls'];
  if (tunnelled.value === true && nativeTls.value) {
    const at = tunnelled.source.kind === 'file' ? tunnelled.source : nativeTls.source;
    errors.push(
      new ConfigError(
        "setting both 'live_migration_tunnelled' and 'live_migration_with_native_tls' is invalid (nova refuses to start)",
        {
          file: at.kind === 'file' ? at.file : '<defaults>',
          line: lineOf(at),
          option: 'libvirt.live_migration_tunnelled',
        },
        { hint: 'keep live_migration_with_native_tls = True and remove live_migration_tunnelled' },
      ),
    );
  }
  return {
    mode: legacy ? 'legacy' : 'current',
    live: live.sorted(),
    block: block.sorted(),
    warnings,
    errors,
  };
}
