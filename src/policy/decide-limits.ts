import {
  completionTimeoutSeconds,
  downtimeSteps,
  migrationDataGiB,
  type DowntimeStep,
} from './downtime-steps.js';
import { cite, type PlanContext } from './plan-input.js';
import type { Decided, PlanReason, TimeoutAction } from './types.js';

const MiB = 1024 * 1024;
/** "Unlimited" for QEMU max-bandwidth: the largest integer JSON carries exactly (~8 PiB/s). */
export const UNLIMITED_BANDWIDTH_BYTES = Number.MAX_SAFE_INTEGER;

/** The bandwidth cap, and the max-bandwidth QEMU is given for it (never its own 128 MiB/s default by accident). */
export function decideBandwidth(ctx: PlanContext): Decided<{ mibps: number; qemuMaxBandwidthBytes: number }> {
  const { o, overrides } = ctx;
  const mibps = overrides.bandwidthMiBps ?? o['libvirt.live_migration_bandwidth'].value;
  const message =
    mibps === 0
      ? 'unlimited: QEMU max-bandwidth is set to its largest value, since QEMU 7.2 otherwise caps a migration at 128 MiB/s'
      : `${mibps} MiB/s` +
        (overrides.bandwidthMiBps === undefined
          ? `: ${cite(o, 'libvirt.live_migration_bandwidth')}`
          : ' (override)');
  const reason: PlanReason = {
    decision: 'bandwidth',
    option: overrides.bandwidthMiBps === undefined ? 'libvirt.live_migration_bandwidth' : undefined,
    message,
  };
  return {
    value: { mibps, qemuMaxBandwidthBytes: mibps === 0 ? UNLIMITED_BANDWIDTH_BYTES : mibps * MiB },
    reasons: [reason],
  };
}

/** nova's data size and downtime schedule for it (live_migration_downtime, _steps, _delay). */
export function decideDowntime(ctx: PlanContext): Decided<{ dataGiB: number; steps: DowntimeStep[] }> {
  const { o, kind } = ctx;
  const dataGiB = migrationDataGiB(kind, ctx.memoryMiB, ctx.disksGiB);
  const steps = downtimeSteps(
    {
      downtimeMs: o['libvirt.live_migration_downtime'].value,
      steps: o['libvirt.live_migration_downtime_steps'].value,
      delaySecondsPerGiB: o['libvirt.live_migration_downtime_delay'].value,
    },
    dataGiB,
  );
  const reasons: PlanReason[] = [
    {
      decision: 'dataSize',
      message:
        `${dataGiB} GiB: RAM (at least 2 GiB)` +
        (kind === 'block' ? ' + each disk (at least 2 GiB each)' : '; a live migration copies no disk') +
        ", as nova's _live_migration_data_gb counts it",
    },
    {
      decision: 'downtimeSteps',
      option: 'libvirt.live_migration_downtime',
      message:
        `${steps.length} steps from ${steps[0]?.[1]} ms to ${steps.at(-1)?.[1]} ms, one every ` +
        `${steps[1]?.[0] ?? 0} s: ${cite(o, 'libvirt.live_migration_downtime')}, ` +
        `${cite(o, 'libvirt.live_migration_downtime_steps')}, ${cite(o, 'libvirt.live_migration_downtime_delay')} x ${dataGiB} GiB`,
    },
  ];
  return { value: { dataGiB, steps }, reasons };
}

/** The completion timeout (nova's, per GiB of data, or the override) and what it does. */
export function decideTimeouts(
  ctx: PlanContext,
  dataGiB: number,
  postCopy: boolean,
): Decided<{ completionTimeoutSeconds: number; timeoutAction: TimeoutAction }> {
  const { o, overrides } = ctx;
  const configured = completionTimeoutSeconds(o['libvirt.live_migration_completion_timeout'].value, dataGiB);
  const timeout = overrides.completionTimeoutSeconds ?? configured;
  const action = overrides.timeoutAction ?? o['libvirt.live_migration_timeout_action'].value;
  const timeoutReason: PlanReason =
    overrides.completionTimeoutSeconds !== undefined
      ? {
          decision: 'completionTimeout',
          message:
            timeout === 0
              ? 'no completion timeout: requested for this migration (override)'
              : `${timeout} s: requested for this migration (override)`,
        }
      : {
          decision: 'completionTimeout',
          option: 'libvirt.live_migration_completion_timeout',
          message:
            timeout === 0
              ? `no completion timeout: ${cite(o, 'libvirt.live_migration_completion_timeout')}`
              : `${timeout} s: ${cite(o, 'libvirt.live_migration_completion_timeout')} x ${dataGiB} GiB`,
        };
  const effect =
    timeout === 0
      ? `${action}, but it never triggers without a completion timeout`
      : action === 'abort'
        ? 'abort at the timeout: the migration is cancelled and the VM keeps running on the source'
        : postCopy
          ? 'force_complete at the timeout: switch to post-copy'
          : 'force_complete at the timeout: pause the guest so the rest is sent, then resume it on the destination (downtime grows)';
  const actionReason: PlanReason =
    overrides.timeoutAction !== undefined
      ? { decision: 'timeoutAction', message: `${effect} (override)` }
      : { decision: 'timeoutAction', option: 'libvirt.live_migration_timeout_action', message: effect };
  return {
    value: { completionTimeoutSeconds: timeout, timeoutAction: action },
    reasons: [timeoutReason, actionReason],
  };
}

/**
 * Block migration: how long nothing may move while the disks are mirrored ([vmferry]
 * disk_stall_timeout or the override). No reason without disks to copy.
 */
export function decideDiskStall(ctx: PlanContext): Decided<number> {
  const { o, overrides } = ctx;
  const override = overrides.diskStallSeconds;
  const value = override ?? o['vmferry.disk_stall_timeout'].value;
  if (ctx.kind !== 'block') return { value, reasons: [] };
  const source = override !== undefined ? 'override' : cite(o, 'vmferry.disk_stall_timeout');
  const message =
    value === 0
      ? `no stall detection for the disk copies: guest writes may wait on a cut link until another limit fails the migration (${source})`
      : `${value} s without anything moving while the disks are mirrored fails the migration: guest writes to them wait at most that long on a cut link (${source})`;
  return {
    value,
    reasons: [
      override !== undefined
        ? { decision: 'diskStallTimeout', message }
        : { decision: 'diskStallTimeout', option: 'vmferry.disk_stall_timeout', message },
    ],
  };
}

/** How long without a fall in remaining memory counts as a timeout ([vmferry] stall_timeout or the override). */
export function decideStall(ctx: PlanContext): Decided<number> {
  const { o, overrides } = ctx;
  if (overrides.stallSeconds !== undefined) {
    const s = overrides.stallSeconds;
    const message =
      s === 0
        ? 'no stall detection: requested for this migration (override)'
        : `${s} s without a fall in remaining memory is handled like the completion timeout (override)`;
    return { value: s, reasons: [{ decision: 'stallTimeout', message }] };
  }
  const stall = o['vmferry.stall_timeout'].value;
  const message =
    stall === 0
      ? `no stall detection: ${cite(o, 'vmferry.stall_timeout')}`
      : `${stall} s without a fall in remaining memory is handled like the completion timeout (${cite(o, 'vmferry.stall_timeout')})`;
  return { value: stall, reasons: [{ decision: 'stallTimeout', option: 'vmferry.stall_timeout', message }] };
}
