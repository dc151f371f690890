import { computeMigrationFlags } from '../config/index.js';
import { decideChannels, requestChannels } from './decide-channels.js';
import { decideDisks } from './decide-disks.js';
import {
  decideBandwidth,
  decideDiskStall,
  decideDowntime,
  decideStall,
  decideTimeouts,
} from './decide-limits.js';
import { decideAutoConverge, decidePostCopy, postCopyOption } from './decide-post-copy.js';
import { decideEncryption, decideTransport, decideTunnel } from './decide-transport.js';
import type { DowntimeStep } from './downtime-steps.js';
import { planContext, type MigrationKind, type PlanContext, type PlanInput } from './plan-input.js';
import { decideRelayWorkers } from './relay-workers.js';
import { describeRelays } from './decide-relay.js';
import type { TunnelRelayKind } from '../qemu/index.js';
import type {
  Decided,
  DiskPlan,
  Encryption,
  MigrationSettings,
  PlanReason,
  TimeoutAction,
  Transport,
  TunnelMode,
} from './types.js';

export interface MigrationPlan {
  readonly kind: MigrationKind;
  readonly transport: Transport;
  /** The stream is encrypted between the hosts (by QEMU or by vmferry's agents). */
  readonly tls: boolean;
  readonly encryption: Encryption;
  readonly tunnel: TunnelMode;
  /** The relay both ends must run (an override); undefined: each agent's own. */
  readonly relay: TunnelRelayKind | undefined;
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
  readonly timeoutAction: TimeoutAction;
  /** 0 = unlimited. */
  readonly bandwidthMiBps: number;
  /** The value for QEMU's max-bandwidth (bytes/s): never QEMU's own 128 MiB/s default by accident. */
  readonly qemuMaxBandwidthBytes: number;
  /** No fall in remaining memory for this long is handled like the completion timeout; 0 = off. */
  readonly stallTimeoutSeconds: number;
  /** Block migration: nothing moved for this long while the disks are mirrored fails it; 0 = off. */
  readonly diskStallTimeoutSeconds: number;
  /** Tunnelled, with the source's CPUs known: the relay processes of the source agent ([vmferry] workers). */
  readonly relayWorkers: number | undefined;
  /** How each disk gets to the destination, when the plan was made with the VM's disks. */
  readonly disks: readonly DiskPlan[] | undefined;
  /** Block migration: the source keeps its images of copied disks. */
  readonly keepSourceDisks: boolean;
  readonly reasons: readonly PlanReason[];
}

/**
 * Decides how one migration runs, from the resolved nova.conf options, the kind of
 * migration, the VM's size, what both hosts can do and the operator's per-migration
 * overrides. Pure: the same input always gives the same plan, and every decision
 * carries its reasons (the decide* functions, one per decision).
 */
export function planMigration(input: PlanInput): MigrationPlan {
  const disks = planDisks(input);
  const copied = disks?.value.filter((d) => d.action === 'copy') ?? [];
  const ctx = planContext(
    disks === undefined
      ? input
      : {
          ...input,
          kind: copied.length > 0 ? 'block' : 'live',
          disksGiB: copied.map((d) => d.virtualSize / GiB),
        },
  );
  const transport = decideTransport(ctx);
  const encryption = decideEncryption(ctx, transport);
  const tunnel = decideTunnel(ctx);
  const bandwidth = decideBandwidth(ctx);
  const request = requestChannels(ctx);
  const postCopy = decidePostCopy(ctx, encryption.value, request, bandwidth.value.mibps);
  const channels = decideChannels(
    request,
    { value: postCopy.value, option: postCopyOption(ctx) },
    transport.value,
    tunnel.value,
  );
  const autoConverge = decideAutoConverge(ctx, postCopy.value);
  const flags = decideFlags(ctx, {
    transport: transport.value,
    encryption: encryption.value,
    postCopy: postCopy.value,
    autoConverge: autoConverge.value,
    channels: channels.value,
    disks: disks?.value,
  });
  const downtime = decideDowntime(ctx);
  const timeouts = decideTimeouts(ctx, downtime.value.dataGiB, postCopy.value);
  const stall = decideStall(ctx);
  const diskStall = decideDiskStall(ctx);
  const relay = relayWorkersOf(ctx, transport.value);
  const relays = relaysOf(ctx, transport.value, tunnel.value);
  const decided: Decided<unknown>[] = [
    transport,
    encryption,
    tunnel,
    relays,
    channels,
    postCopy,
    autoConverge,
    flags,
  ];
  decided.push(downtime, timeouts, bandwidth, stall, diskStall, ...(relay === undefined ? [] : [relay]));
  if (disks !== undefined) decided.push(disks);
  return {
    kind: ctx.kind,
    transport: transport.value,
    tls: encryption.value !== 'none',
    encryption: encryption.value,
    tunnel: tunnel.value,
    relay: transport.value === 'tunnelled' && tunnel.value === 'multi' ? ctx.overrides.relay : undefined,
    channels: channels.value,
    flags: flags.value,
    postCopy: postCopy.value,
    autoConverge: autoConverge.value,
    dataGiB: downtime.value.dataGiB,
    downtimeSteps: downtime.value.steps,
    completionTimeoutSeconds: timeouts.value.completionTimeoutSeconds,
    timeoutAction: timeouts.value.timeoutAction,
    bandwidthMiBps: bandwidth.value.mibps,
    qemuMaxBandwidthBytes: bandwidth.value.qemuMaxBandwidthBytes,
    stallTimeoutSeconds: stall.value,
    diskStallTimeoutSeconds: diskStall.value,
    relayWorkers: relay?.value,
    disks: disks?.value,
    keepSourceDisks: ctx.overrides.keepSourceDisks === true,
    reasons: decided.flatMap((d) => d.reasons),
  };
}

const GiB = 1024 ** 3;

/** How each disk crosses, when the input says what both hosts see of them; incremental copies as nova's block flags allow. */
function planDisks(input: PlanInput): Decided<DiskPlan[]> | undefined {
  if (input.disks === undefined) return undefined;
  const nova = computeMigrationFlags(input.options);
  return decideDisks({ ...input.disks, incremental: nova.block.includes('VIR_MIGRATE_NON_SHARED_INC') });
}

/** nova's VIR_MIGRATE_* flags for this kind of migration, with the decisions above set in them. */
function decideFlags(
  ctx: PlanContext,
  d: {
    transport: Transport;
    encryption: Encryption;
    postCopy: boolean;
    autoConverge: boolean;
    channels: number;
    disks: readonly DiskPlan[] | undefined;
  },
): Decided<string[]> {
  const flags = new Set(ctx.novaFlags);
  const set = (flag: string, on: boolean): void => {
    if (on) flags.add(flag);
    else flags.delete(flag);
  };
  set('VIR_MIGRATE_TUNNELLED', d.transport === 'tunnelled');
  set('VIR_MIGRATE_TLS', d.encryption === 'qemu-tls');
  set('VIR_MIGRATE_POSTCOPY', d.postCopy);
  set('VIR_MIGRATE_AUTO_CONVERGE', d.autoConverge);
  set('VIR_MIGRATE_PARALLEL', d.channels > 1);
  if (d.disks !== undefined) {
    // Known disks: NON_SHARED_INC for a top image copied alone, NON_SHARED_DISK for a whole disk.
    set(
      'VIR_MIGRATE_NON_SHARED_INC',
      d.disks.some((p) => p.sync === 'top'),
    );
    set(
      'VIR_MIGRATE_NON_SHARED_DISK',
      d.disks.some((p) => p.sync === 'full'),
    );
  }
  const reason: PlanReason = {
    decision: 'flags',
    option: ctx.legacy ? ctx.listOption : undefined,
    message:
      (ctx.legacy ? `nova 13 rules on ${ctx.listOption}` : "today's nova rules") +
      ', then TUNNELLED, TLS, POSTCOPY, AUTO_CONVERGE, PARALLEL and the NON_SHARED_* of the disks set by the decisions above',
  };
  return { value: [...flags].sort(), reasons: [reason] };
}

/** Which relay each host runs for a tunnelled stream, as the hosts say (a reason, no decision of the plan's). */
function relaysOf(ctx: PlanContext, transport: Transport, tunnel: TunnelMode): Decided<undefined> {
  return {
    value: undefined,
    reasons: describeRelays(
      transport,
      tunnel,
      ctx.source.tunnelRelay,
      ctx.destination.tunnelRelay,
      ctx.overrides.relay,
    ),
  };
}

function relayWorkersOf(ctx: PlanContext, transport: Transport): Decided<number> | undefined {
  const configured = ctx.o['vmferry.workers'].value;
  if (transport !== 'tunnelled' || (configured === 0 && ctx.source.cpus === undefined)) return undefined;
  return decideRelayWorkers({ cpus: ctx.source.cpus ?? 0, configured });
}

/** The plan, reduced to what the drivers act on (and report, with the reasons). */
export function migrationSettings(plan: MigrationPlan): MigrationSettings {
  return {
    transport: plan.transport,
    tls: plan.tls,
    channels: plan.channels,
    tunnel: plan.tunnel,
    ...(plan.relay !== undefined ? { relay: plan.relay } : {}),
    bandwidthMiBps: plan.bandwidthMiBps,
    maxBandwidthBytes: plan.qemuMaxBandwidthBytes,
    downtimeSteps: plan.downtimeSteps,
    completionTimeoutSeconds: plan.completionTimeoutSeconds,
    timeoutAction: plan.timeoutAction,
    postCopy: plan.postCopy,
    autoConverge: plan.autoConverge,
    stallSeconds: plan.stallTimeoutSeconds,
    reasons: plan.reasons.map((r) => r.message),
    // Only a block migration has disks for the destination to act on.
    ...(plan.kind === 'block' && plan.disks !== undefined
      ? {
          disks: [...plan.disks],
          keepSourceDisks: plan.keepSourceDisks,
          diskStallSeconds: plan.diskStallTimeoutSeconds,
        }
      : {}),
  };
}
