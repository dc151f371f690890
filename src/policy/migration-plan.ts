import {
  computeMigrationFlags,
  describeSource,
  isSet,
  type OptionName,
  type ResolvedOption,
  type ResolvedOptions,
} from '../config/index.js';
import { PlanError, UsageError } from '../errors.js';
import {
  completionTimeoutSeconds,
  downtimeSteps,
  migrationDataGiB,
  type DowntimeStep,
} from './downtime-steps.js';
import type { HostCapabilities } from './host-capabilities.js';
import type { Encryption, PlanReason, Transport } from './types.js';

export type MigrationKind = 'live' | 'block';

/** Per-migration choices that beat the configuration (API request, CLI flags). */
export interface PlanOverrides {
  readonly transport?: Transport;
  readonly channels?: number;
  readonly postCopy?: boolean;
  readonly autoConverge?: boolean;
  readonly bandwidthMiBps?: number;
  /** false: clear text (only with [vmferry] permit_cleartext); true: encrypted or refuse. */
  readonly tls?: boolean;
}

export interface PlanInput {
  readonly options: ResolvedOptions;
  readonly kind: MigrationKind;
  readonly memoryMiB: number;
  /** Local disks a block migration copies, GiB each (nova counts each as at least 2 GiB). */
  readonly disksGiB?: readonly number[];
  readonly source: HostCapabilities;
  readonly destination: HostCapabilities;
  readonly overrides?: PlanOverrides;
}

export interface MigrationPlan {
  readonly kind: MigrationKind;
  readonly transport: Transport;
  /** The stream is encrypted between the hosts (by QEMU or by vmferry's agents). */
  readonly tls: boolean;
  readonly encryption: Encryption;
  /** Multifd channels; 1 = no multifd. */
  readonly channels: number;
  /** VIR_MIGRATE_* names describing the plan in nova's terms, sorted. */
  readonly flags: readonly string[];
  readonly postCopy: boolean;
  readonly autoConverge: boolean;
  readonly dataGiB: number;
  readonly downtimeSteps: readonly DowntimeStep[];
  /** 0 = no completion timeout. */
  readonly completionTimeoutSeconds: number;
  readonly timeoutAction: 'abort' | 'force_complete';
  /** 0 = unlimited. */
  readonly bandwidthMiBps: number;
  /** The value for QEMU's max-bandwidth (bytes/s): never QEMU's own 128 MiB/s default by accident. */
  readonly qemuMaxBandwidthBytes: number;
  /** No fall in remaining memory for this long is handled like the completion timeout; 0 = off. */
  readonly stallTimeoutSeconds: number;
  readonly reasons: readonly PlanReason[];
}

const MiB = 1024 * 1024;
/** "Unlimited" for QEMU max-bandwidth: the largest integer JSON carries exactly (~8 PiB/s). */
export const UNLIMITED_BANDWIDTH_BYTES = Number.MAX_SAFE_INTEGER;

function cite(options: ResolvedOptions, name: OptionName): string {
  const o = options[name] as ResolvedOption<string | number | boolean | null>;
  const value = o.value === null ? 'unset' : String(o.value);
  return `${name} = ${value} (${describeSource(o.source)})`;
}

function hostsLacking(
  source: HostCapabilities,
  destination: HostCapabilities,
  cap: keyof HostCapabilities,
): { names: string[]; capability: string } {
  const names = [...(source[cap] ? [] : ['source']), ...(destination[cap] ? [] : ['destination'])];
  return {
    names,
    capability: names.map((n) => `${n}.${cap}`).join(',') || `source.${cap},destination.${cap}`,
  };
}

function validate(input: PlanInput): void {
  if (input.kind !== 'live' && input.kind !== 'block')
    throw new UsageError(`kind must be live or block, got ${String(input.kind)}`);
  if (!Number.isFinite(input.memoryMiB) || input.memoryMiB <= 0) {
    throw new UsageError(`memoryMiB must be a number > 0, got ${input.memoryMiB}`);
  }
  for (const d of input.disksGiB ?? []) {
    if (!Number.isFinite(d) || d < 0) throw new UsageError(`disk sizes must be numbers >= 0 GiB, got ${d}`);
  }
  const o = input.overrides ?? {};
  if (o.channels !== undefined && (!Number.isInteger(o.channels) || o.channels < 1 || o.channels > 255)) {
    throw new UsageError(`channels must be a whole number from 1 to 255, got ${o.channels}`);
  }
  if (o.bandwidthMiBps !== undefined && (!Number.isInteger(o.bandwidthMiBps) || o.bandwidthMiBps < 0)) {
    throw new UsageError(`bandwidthMiBps must be a whole number >= 0, got ${o.bandwidthMiBps}`);
  }
}

/**
 * Decides how one migration runs, from the resolved nova.conf options, the kind of
 * migration, the VM's size and what both hosts can do. Pure: the same input always
 * gives the same plan, and every decision carries a reason.
 *
 * Transport (live_migration_tunnelled, tri-state): True = tunnelled through vmferry's
 * agents (TLS between agents); False = native, encrypted by QEMU TLS — a PlanError when a
 * host cannot do TLS, unless [vmferry] permit_cleartext; unset = native TLS when both
 * hosts can, otherwise tunnelled. Never clear text unless the operator opted in.
 *
 * Post-copy is used only when permitted and it can be made safe: both hosts support it,
 * no disk is being copied, QEMU TLS is not carrying it (TLS post-copy can stall in QEMU
 * before 10.1), the whole memory could be sent within [vmferry] postcopy_max_exposure at
 * the bandwidth limit, and multifd is not needed (QEMU 7.2 cannot combine the two:
 * explicitly configured channels win, default channels give way to post-copy).
 */
export function planMigration(input: PlanInput): MigrationPlan {
  validate(input);
  const { options: o, kind, source, destination } = input;
  const overrides = input.overrides ?? {};
  const reasons: PlanReason[] = [];
  const why = (r: PlanReason): void => {
    reasons.push(r);
  };

  const nova = computeMigrationFlags(o);
  const invalid = nova.errors[0];
  if (invalid !== undefined) throw new PlanError(invalid.message, { hint: invalid.hint });
  const legacy = nova.mode === 'legacy';
  const listOption = kind === 'live' ? 'libvirt.live_migration_flag' : 'libvirt.block_migration_flag';
  const novaFlags = new Set(kind === 'live' ? nova.live : nova.block);

  // Transport and encryption.
  const tunnelledOpt = o['libvirt.live_migration_tunnelled'];
  let tri = tunnelledOpt.value;
  let triOption: string = 'libvirt.live_migration_tunnelled';
  let triText = cite(o, 'libvirt.live_migration_tunnelled');
  if (tri === null && legacy) {
    tri = novaFlags.has('VIR_MIGRATE_TUNNELLED');
    triOption = listOption;
    triText = `${listOption} ${tri ? 'has' : 'has no'} VIR_MIGRATE_TUNNELLED (${describeSource(o[listOption].source)})`;
  }
  const bothTls = source.nativeTls && destination.nativeTls;
  const noTls = hostsLacking(source, destination, 'nativeTls');
  let transport: Transport;
  let encryption: Encryption;

  const nativeEncrypted = (driver: string): Encryption => {
    if (overrides.tls === false) {
      if (!o['vmferry.permit_cleartext'].value) {
        throw new PlanError(
          'clear text was requested for this migration, but vmferry does not send memory in clear text',
          {
            hint: 'set [vmferry] permit_cleartext = True to allow it (for benchmarks on a trusted link)',
          },
        );
      }
      why({
        decision: 'tls',
        option: 'vmferry.permit_cleartext',
        message: `CLEAR TEXT: requested for this migration (override) and allowed by ${cite(o, 'vmferry.permit_cleartext')}`,
      });
      return 'none';
    }
    if (bothTls) {
      const asked = o['libvirt.live_migration_with_native_tls'].value;
      why({
        decision: 'tls',
        option: 'libvirt.live_migration_with_native_tls',
        capability: 'source.nativeTls,destination.nativeTls',
        message: asked
          ? `QEMU TLS on both hosts, as ${cite(o, 'libvirt.live_migration_with_native_tls')} asks`
          : `${cite(o, 'libvirt.live_migration_with_native_tls')}, but vmferry does not send memory in clear ` +
            'text: both hosts can do QEMU TLS, so it is used',
      });
      return 'qemu-tls';
    }
    if (o['vmferry.permit_cleartext'].value && overrides.tls !== true) {
      why({
        decision: 'tls',
        option: 'vmferry.permit_cleartext',
        capability: noTls.capability,
        message:
          `CLEAR TEXT: the ${noTls.names.join(' and ')} host cannot do QEMU TLS and ` +
          `${cite(o, 'vmferry.permit_cleartext')} allows guest memory to cross the network unencrypted`,
      });
      return 'none';
    }
    throw new PlanError(
      `${driver} asks for the native transport, but the ${noTls.names.join(' and ')} host cannot do QEMU TLS; ` +
        'vmferry will not fall back to clear text',
      {
        hint:
          'install vmferry certificates on that host (see `vmferry host info`), or set live_migration_tunnelled = True ' +
          'to use the encrypted tunnel; [vmferry] permit_cleartext = True accepts clear text',
      },
    );
  };

  if (overrides.transport !== undefined || overrides.tls === false) {
    // Clear text only exists natively: asking for it picks the native transport.
    transport = overrides.transport ?? 'native';
    why({ decision: 'transport', message: `${transport}: requested for this migration (override)` });
    if (transport === 'tunnelled' && overrides.tls === false) {
      throw new PlanError('the tunnelled transport is always encrypted; tls = false cannot apply to it');
    }
    encryption = transport === 'tunnelled' ? 'agent-tls' : nativeEncrypted('the override');
  } else if (tri === true) {
    transport = 'tunnelled';
    encryption = 'agent-tls';
    why({ decision: 'transport', option: triOption, message: `tunnelled: ${triText}` });
  } else if (tri === false) {
    transport = 'native';
    why({ decision: 'transport', option: triOption, message: `native: ${triText}` });
    encryption = nativeEncrypted(triText);
  } else if (bothTls) {
    transport = 'native';
    encryption = 'qemu-tls';
    why({
      decision: 'transport',
      option: 'libvirt.live_migration_tunnelled',
      capability: 'source.nativeTls,destination.nativeTls',
      message: `native with QEMU TLS: ${triText} and both hosts can do QEMU TLS (the fastest secure transport)`,
    });
    why({
      decision: 'tls',
      capability: 'source.nativeTls,destination.nativeTls',
      message:
        'QEMU TLS (tls-creds-x509 with vmferry certificates) on both hosts, every channel encrypted by QEMU itself',
    });
  } else {
    transport = 'tunnelled';
    encryption = 'agent-tls';
    why({
      decision: 'transport',
      option: 'libvirt.live_migration_tunnelled',
      capability: noTls.capability,
      message: `tunnelled: ${triText} and the ${noTls.names.join(' and ')} host cannot do QEMU TLS; the tunnel keeps it encrypted`,
    });
  }
  if (encryption === 'agent-tls') {
    const t = reasons.find((r) => r.decision === 'transport');
    why({
      decision: 'tls',
      option: t?.option,
      capability: t?.capability,
      message:
        'TLS between the vmferry agents (mutually authenticated), because the transport is tunnelled' +
        (t?.option === undefined && t?.capability === undefined ? ' (override)' : '') +
        '; QEMU itself only talks to its local agent',
    });
  }
  if (transport === 'tunnelled' && kind === 'block') {
    const t = reasons.find((r) => r.decision === 'transport');
    why({
      decision: 'transport',
      option: t?.option,
      capability: t?.capability,
      message:
        "block migration through the tunnel: unlike libvirt's tunnel, vmferry's agents must relay the disk stream too" +
        (t?.option === undefined && t?.capability === undefined ? ' (override)' : ''),
    });
  }

  // Channels.
  let requested: number;
  let channelsExplicit = true;
  let channelsWhy: PlanReason;
  if (overrides.channels !== undefined) {
    requested = overrides.channels;
    channelsWhy = { decision: 'channels', message: `${requested} requested for this migration (override)` };
  } else if (isSet(o['vmferry.channels'])) {
    requested = o['vmferry.channels'].value;
    channelsWhy = { decision: 'channels', option: 'vmferry.channels', message: cite(o, 'vmferry.channels') };
  } else if (isSet(o['libvirt.live_migration_parallel_connections'])) {
    requested = o['libvirt.live_migration_parallel_connections'].value;
    channelsWhy = {
      decision: 'channels',
      option: 'libvirt.live_migration_parallel_connections',
      message: cite(o, 'libvirt.live_migration_parallel_connections'),
    };
  } else {
    requested = o['vmferry.channels'].value;
    channelsExplicit = false;
    channelsWhy = {
      decision: 'channels',
      option: 'vmferry.channels',
      message: `${cite(o, 'vmferry.channels')}`,
    };
    const cpus = Math.min(source.cpus ?? Infinity, destination.cpus ?? Infinity);
    const fit = Math.max(1, Math.floor(cpus / 2));
    if (Number.isFinite(cpus) && fit < requested) {
      // Each channel is a sending and a receiving thread (plus, tunnelled, a relay on each side).
      // QEMU 7.2's multifd sender also busy-waits for a free channel when channels are slower than
      // it, burning a core: on 2-CPU hosts one stream measured faster than four (bench/README.md).
      requested = fit;
      channelsWhy = {
        decision: 'channels',
        option: 'vmferry.channels',
        capability: 'source.cpus,destination.cpus',
        message:
          `${cite(o, 'vmferry.channels')} sized down to ${fit} for the smaller host's ${cpus} CPUs ` +
          '(a channel per 2 CPUs; set vmferry.channels to choose)',
      };
    }
  }
  let channels = requested;
  let channelsExplained = false;
  const noMultifd = hostsLacking(source, destination, 'multifd');
  if (requested > 1 && noMultifd.names.length > 0) {
    channels = 1;
    channelsExplained = true;
    why({
      decision: 'channels',
      option: channelsWhy.option,
      capability: noMultifd.capability,
      message: `1 channel (no multifd): ${channelsWhy.message} asks for ${requested}, but the ${noMultifd.names.join(' and ')} host has no multifd`,
    });
  }

  // Post-copy.
  const bandwidth = overrides.bandwidthMiBps ?? o['libvirt.live_migration_bandwidth'].value;
  const postCopyOption: string =
    legacy && !o['libvirt.live_migration_permit_post_copy'].value
      ? listOption
      : 'libvirt.live_migration_permit_post_copy';
  const postCopyPermitted = overrides.postCopy ?? novaFlags.has('VIR_MIGRATE_POSTCOPY');
  let postCopy = false;
  const refusePostCopy = (r: Omit<PlanReason, 'decision'>): void => {
    if (overrides.postCopy === true)
      throw new PlanError(`post-copy was requested but cannot be used safely: ${r.message}`);
    why({ decision: 'postCopy', ...r });
  };
  if (!postCopyPermitted) {
    why({
      decision: 'postCopy',
      option: overrides.postCopy === false ? undefined : postCopyOption,
      message:
        overrides.postCopy === false
          ? 'off: not wanted for this migration (override)'
          : `off: not permitted (${cite(o, 'libvirt.live_migration_permit_post_copy')})`,
    });
  } else {
    const noPostcopy = hostsLacking(source, destination, 'postcopy');
    const exposure = bandwidth > 0 ? input.memoryMiB / bandwidth : 0;
    const maxExposure = o['vmferry.postcopy_max_exposure'].value;
    if (noPostcopy.names.length > 0) {
      refusePostCopy({
        capability: noPostcopy.capability,
        message: `off: the ${noPostcopy.names.join(' and ')} host cannot do post-copy`,
      });
    } else if (kind === 'block') {
      refusePostCopy({
        option: postCopyOption,
        message:
          'off for block migration: after a switch the destination would depend on the source for both RAM and a ' +
          'disk copy still in flight; vmferry does not take that risk',
      });
    } else if (encryption === 'qemu-tls') {
      refusePostCopy({
        option: 'libvirt.live_migration_with_native_tls',
        capability: 'source.nativeTls,destination.nativeTls',
        message:
          'off with QEMU TLS: a post-copy stream over QEMU TLS can stall (GnuTLS re-keying with the return path, ' +
          'fixed in QEMU 10.1) and a stalled post-copy loses the VM; use the tunnel to get post-copy',
      });
    } else if (bandwidth > 0 && exposure > maxExposure) {
      refusePostCopy({
        option: 'libvirt.live_migration_bandwidth',
        message:
          `off: at ${cite(o, 'libvirt.live_migration_bandwidth')} the ${input.memoryMiB} MiB of memory could take ` +
          `${Math.ceil(exposure)} s to send after the switch, more than ${cite(o, 'vmferry.postcopy_max_exposure')}; ` +
          'the VM would depend on the link that long',
      });
    } else if (channels > 1 && channelsExplicit) {
      refusePostCopy({
        option: channelsWhy.option,
        message:
          `off: ${channelsWhy.message} chose multifd and QEMU 7.2 cannot combine multifd with post-copy; ` +
          'multifd keeps the migration recoverable to the end (nova 33 refuses the combination on old QEMU too)',
      });
    } else {
      postCopy = true;
      if (channels > 1) {
        channels = 1;
        channelsExplained = true;
        why({
          decision: 'channels',
          option: postCopyOption,
          message:
            `1 channel: post-copy is permitted (${postCopyOption}) and QEMU 7.2 cannot combine it with multifd; the ` +
            `channel count was only vmferry's default (set [vmferry] channels to prefer multifd)`,
        });
      }
      why({
        decision: 'postCopy',
        option: overrides.postCopy === true ? undefined : postCopyOption,
        message:
          (overrides.postCopy === true
            ? 'on: requested for this migration (override)'
            : `on: permitted by ${postCopyOption}`) +
          '; the switch happens at the completion timeout with force_complete, or on `vmferry migrate --force-complete`. ' +
          'From the switch on, losing the link loses the VM',
      });
    }
  }
  if (!channelsExplained) {
    why({
      ...channelsWhy,
      message:
        channels > 1
          ? `${channels} multifd channels: ${channelsWhy.message}` +
            (transport === 'tunnelled' ? '; each channel gets its own TLS connection through the agents' : '')
          : `1 channel (no multifd): ${channelsWhy.message}`,
    });
  }

  // Auto-converge: post-copy wins, as in nova's _handle_live_migration_auto_converge.
  const acPermitted =
    overrides.autoConverge ??
    (o['libvirt.live_migration_permit_auto_converge'].value ||
      (legacy && novaFlags.has('VIR_MIGRATE_AUTO_CONVERGE')));
  let autoConverge = false;
  const acOption =
    overrides.autoConverge !== undefined ? undefined : 'libvirt.live_migration_permit_auto_converge';
  if (!acPermitted) {
    why({
      decision: 'autoConverge',
      option: acOption,
      message: 'off: not permitted' + (acOption ? ` (${cite(o, acOption)})` : ' (override)'),
    });
  } else if (postCopy) {
    why({
      decision: 'autoConverge',
      option: acOption,
      message: 'off: post-copy is used and wins over auto-converge (as in nova)',
    });
  } else if (!source.autoConverge) {
    why({
      decision: 'autoConverge',
      capability: 'source.autoConverge',
      message: 'off: the source host cannot throttle the guest CPUs',
    });
  } else {
    autoConverge = true;
    why({
      decision: 'autoConverge',
      option: acOption,
      message: 'on: guest CPUs are throttled when the migration does not converge',
    });
  }

  // Flags, in nova's terms.
  const flags = new Set(novaFlags);
  const setFlag = (flag: string, on: boolean): void => {
    if (on) flags.add(flag);
    else flags.delete(flag);
  };
  setFlag('VIR_MIGRATE_TUNNELLED', transport === 'tunnelled');
  setFlag('VIR_MIGRATE_TLS', encryption === 'qemu-tls');
  setFlag('VIR_MIGRATE_POSTCOPY', postCopy);
  setFlag('VIR_MIGRATE_AUTO_CONVERGE', autoConverge);
  setFlag('VIR_MIGRATE_PARALLEL', channels > 1);
  why({
    decision: 'flags',
    option: legacy ? listOption : undefined,
    message:
      (legacy ? `nova 13 rules on ${listOption}` : "today's nova rules") +
      ', then TUNNELLED, TLS, POSTCOPY, AUTO_CONVERGE and PARALLEL set by the decisions above',
  });

  // Downtime schedule and timeouts: nova's arithmetic.
  const dataGiB = migrationDataGiB(kind, input.memoryMiB, input.disksGiB ?? []);
  why({
    decision: 'dataSize',
    message:
      `${dataGiB} GiB: RAM (at least 2 GiB)` +
      (kind === 'block' ? ' + each disk (at least 2 GiB each)' : '; a live migration copies no disk') +
      ", as nova's _live_migration_data_gb counts it",
  });
  const steps = downtimeSteps(
    {
      downtimeMs: o['libvirt.live_migration_downtime'].value,
      steps: o['libvirt.live_migration_downtime_steps'].value,
      delaySecondsPerGiB: o['libvirt.live_migration_downtime_delay'].value,
    },
    dataGiB,
  );
  why({
    decision: 'downtimeSteps',
    option: 'libvirt.live_migration_downtime',
    message:
      `${steps.length} steps from ${steps[0]?.[1]} ms to ${steps.at(-1)?.[1]} ms, one every ` +
      `${steps[1]?.[0] ?? 0} s: ${cite(o, 'libvirt.live_migration_downtime')}, ` +
      `${cite(o, 'libvirt.live_migration_downtime_steps')}, ${cite(o, 'libvirt.live_migration_downtime_delay')} x ${dataGiB} GiB`,
  });
  const timeout = completionTimeoutSeconds(o['libvirt.live_migration_completion_timeout'].value, dataGiB);
  why({
    decision: 'completionTimeout',
    option: 'libvirt.live_migration_completion_timeout',
    message:
      timeout === 0
        ? `no completion timeout: ${cite(o, 'libvirt.live_migration_completion_timeout')}`
        : `${timeout} s: ${cite(o, 'libvirt.live_migration_completion_timeout')} x ${dataGiB} GiB`,
  });
  const timeoutAction = o['libvirt.live_migration_timeout_action'].value;
  why({
    decision: 'timeoutAction',
    option: 'libvirt.live_migration_timeout_action',
    message:
      timeout === 0
        ? `${timeoutAction}, but it never triggers without a completion timeout`
        : timeoutAction === 'abort'
          ? 'abort at the timeout: the migration is cancelled and the VM keeps running on the source'
          : postCopy
            ? 'force_complete at the timeout: switch to post-copy'
            : 'force_complete at the timeout: pause the guest so the rest is sent, then resume it on the destination (downtime grows)',
  });
  why({
    decision: 'bandwidth',
    option: overrides.bandwidthMiBps === undefined ? 'libvirt.live_migration_bandwidth' : undefined,
    message:
      bandwidth === 0
        ? 'unlimited: QEMU max-bandwidth is set to its largest value, since QEMU 7.2 otherwise caps a migration at 128 MiB/s'
        : `${bandwidth} MiB/s` +
          (overrides.bandwidthMiBps === undefined
            ? `: ${cite(o, 'libvirt.live_migration_bandwidth')}`
            : ' (override)'),
  });
  const stall = o['vmferry.stall_timeout'].value;
  why({
    decision: 'stallTimeout',
    option: 'vmferry.stall_timeout',
    message:
      stall === 0
        ? `no stall detection: ${cite(o, 'vmferry.stall_timeout')}`
        : `${stall} s without a fall in remaining memory is handled like the completion timeout (${cite(o, 'vmferry.stall_timeout')})`,
  });

  return {
    kind,
    transport,
    tls: encryption !== 'none',
    encryption,
    channels,
    flags: [...flags].sort(),
    postCopy,
    autoConverge,
    dataGiB,
    downtimeSteps: steps,
    completionTimeoutSeconds: timeout,
    timeoutAction,
    bandwidthMiBps: bandwidth,
    qemuMaxBandwidthBytes: bandwidth === 0 ? UNLIMITED_BANDWIDTH_BYTES : bandwidth * MiB,
    stallTimeoutSeconds: stall,
    reasons,
  };
}
