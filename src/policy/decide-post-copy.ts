import { PlanError } from '../errors.js';
import type { ChannelRequest } from './decide-channels.js';
import { cite, hostsLacking, type PlanContext } from './plan-input.js';
import type { Decided, Encryption, PlanReason } from './types.js';

/** The option that permits post-copy: live_migration_permit_post_copy, or with nova 13's rules the flag list. */
export function postCopyOption(ctx: PlanContext): string {
  return ctx.legacy && !ctx.o['libvirt.live_migration_permit_post_copy'].value
    ? ctx.listOption
    : 'libvirt.live_migration_permit_post_copy';
}

/**
 * Post-copy, only when permitted and it can be made safe: both hosts support it,
 * no disk is being copied, QEMU TLS is not carrying it (TLS post-copy can stall in
 * QEMU before 10.1), the whole memory could be sent within [vmferry]
 * postcopy_max_exposure at the bandwidth limit, and multifd is not needed (QEMU 7.2
 * cannot combine the two: explicitly configured channels win, default ones give way).
 * Asked for by the override and unsafe: a PlanError.
 */
export function decidePostCopy(
  ctx: PlanContext,
  encryption: Encryption,
  channels: ChannelRequest,
  bandwidthMiBps: number,
): Decided<boolean> {
  const { o, overrides } = ctx;
  const option = postCopyOption(ctx);
  if (!(overrides.postCopy ?? ctx.novaFlags.has('VIR_MIGRATE_POSTCOPY'))) {
    const reason: PlanReason =
      overrides.postCopy === false
        ? { decision: 'postCopy', message: 'off: not wanted for this migration (override)' }
        : {
            decision: 'postCopy',
            option,
            message: `off: not permitted (${cite(o, 'libvirt.live_migration_permit_post_copy')})`,
          };
    return { value: false, reasons: [reason] };
  }
  const unsafe = postCopyRisk(ctx, encryption, channels, bandwidthMiBps);
  if (unsafe !== undefined) {
    if (overrides.postCopy === true)
      throw new PlanError(`post-copy was requested but cannot be used safely: ${unsafe.message}`);
    return { value: false, reasons: [{ decision: 'postCopy', ...unsafe }] };
  }
  const message =
    (overrides.postCopy === true
      ? 'on: requested for this migration (override)'
      : `on: permitted by ${option}`) +
    '; the switch happens at the completion timeout with force_complete, or on `vmferry migrate --force-complete`. ' +
    'From the switch on, losing the link loses the VM';
  return {
    value: true,
    reasons: [{ decision: 'postCopy', option: overrides.postCopy === true ? undefined : option, message }],
  };
}

/** Why post-copy would be unsafe for this migration, or undefined when it is not. */
function postCopyRisk(
  ctx: PlanContext,
  encryption: Encryption,
  channels: ChannelRequest,
  bandwidthMiBps: number,
): Omit<PlanReason, 'decision'> | undefined {
  const { o } = ctx;
  const lacking = hostsLacking(ctx.source, ctx.destination, 'postcopy');
  const exposure = bandwidthMiBps > 0 ? ctx.memoryMiB / bandwidthMiBps : 0;
  if (lacking.names.length > 0) {
    return {
      capability: lacking.capability,
      message: `off: the ${lacking.names.join(' and ')} host cannot do post-copy`,
    };
  }
  if (ctx.kind === 'block') {
    return {
      option: postCopyOption(ctx),
      message:
        'off for block migration: after a switch the destination would depend on the source for both RAM and a ' +
        'disk copy still in flight; vmferry does not take that risk',
    };
  }
  if (encryption === 'qemu-tls') {
    return {
      option: 'libvirt.live_migration_with_native_tls',
      capability: 'source.nativeTls,destination.nativeTls',
      message:
        'off with QEMU TLS: a post-copy stream over QEMU TLS can stall (GnuTLS re-keying with the return path, ' +
        'fixed in QEMU 10.1) and a stalled post-copy loses the VM; use the tunnel to get post-copy',
    };
  }
  if (bandwidthMiBps > 0 && exposure > o['vmferry.postcopy_max_exposure'].value) {
    return {
      option: 'libvirt.live_migration_bandwidth',
      message:
        `off: at ${cite(o, 'libvirt.live_migration_bandwidth')} the ${ctx.memoryMiB} MiB of memory could take ` +
        `${Math.ceil(exposure)} s to send after the switch, more than ${cite(o, 'vmferry.postcopy_max_exposure')}; ` +
        'the VM would depend on the link that long',
    };
  }
  if (channels.count > 1 && channels.explicit) {
    return {
      option: channels.why.option,
      message:
        `off: ${channels.why.message} chose multifd and QEMU 7.2 cannot combine multifd with post-copy; ` +
        'multifd keeps the migration recoverable to the end (nova 33 refuses the combination on old QEMU too)',
    };
  }
  return undefined;
}

/** Auto-converge (guest CPU throttling), when permitted and the source can throttle; post-copy wins, as in nova. */
export function decideAutoConverge(ctx: PlanContext, postCopy: boolean): Decided<boolean> {
  const { o, overrides } = ctx;
  const permitted =
    overrides.autoConverge ??
    (o['libvirt.live_migration_permit_auto_converge'].value ||
      (ctx.legacy && ctx.novaFlags.has('VIR_MIGRATE_AUTO_CONVERGE')));
  const option =
    overrides.autoConverge !== undefined ? undefined : 'libvirt.live_migration_permit_auto_converge';
  const off = (reason: Omit<PlanReason, 'decision'>): Decided<boolean> => ({
    value: false,
    reasons: [{ decision: 'autoConverge', ...reason }],
  });
  if (!permitted)
    return off({
      option,
      message: 'off: not permitted' + (option ? ` (${cite(o, option)})` : ' (override)'),
    });
  if (postCopy)
    return off({ option, message: 'off: post-copy is used and wins over auto-converge (as in nova)' });
  if (!ctx.source.autoConverge) {
    return off({
      capability: 'source.autoConverge',
      message: 'off: the source host cannot throttle the guest CPUs',
    });
  }
  return {
    value: true,
    reasons: [
      {
        decision: 'autoConverge',
        option,
        message: 'on: guest CPUs are throttled when the migration does not converge',
      },
    ],
  };
}
