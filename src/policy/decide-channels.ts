import { isSet } from '../config/index.js';
import { cite, hostsLacking, type PlanContext } from './plan-input.js';
import type { Decided, PlanReason, Transport, TunnelMode } from './types.js';

/** The channel count asked for, before post-copy has its say. */
export interface ChannelRequest {
  /** After the hosts' multifd support: 1 when a host has none. */
  readonly count: number;
  /** Set by the operator (option or override), not vmferry's default: it beats post-copy. */
  readonly explicit: boolean;
  /** What asked for it (option or override), quoted by the final reason. */
  readonly why: PlanReason;
  /** Set when a host without multifd brought it down to 1. */
  readonly noMultifd?: PlanReason;
}

/**
 * The channels asked for: the override, [vmferry] channels, live_migration_parallel_connections,
 * else vmferry's default sized to the smaller host (a channel per 2 CPUs); 1 when a host
 * has no multifd.
 */
export function requestChannels(ctx: PlanContext): ChannelRequest {
  const { o, overrides, source, destination } = ctx;
  let requested: number;
  let explicit = true;
  let why: PlanReason;
  if (overrides.channels !== undefined) {
    requested = overrides.channels;
    why = { decision: 'channels', message: `${requested} requested for this migration (override)` };
  } else if (isSet(o['vmferry.channels'])) {
    requested = o['vmferry.channels'].value;
    why = { decision: 'channels', option: 'vmferry.channels', message: cite(o, 'vmferry.channels') };
  } else if (isSet(o['libvirt.live_migration_parallel_connections'])) {
    requested = o['libvirt.live_migration_parallel_connections'].value;
    why = {
      decision: 'channels',
      option: 'libvirt.live_migration_parallel_connections',
      message: cite(o, 'libvirt.live_migration_parallel_connections'),
    };
  } else {
    ({ requested, why } = defaultChannels(ctx));
    explicit = false;
  }
  const lacking = hostsLacking(source, destination, 'multifd');
  if (requested <= 1 || lacking.names.length === 0) return { count: requested, explicit, why };
  const noMultifd: PlanReason = {
    decision: 'channels',
    option: why.option,
    capability: lacking.capability,
    message: `1 channel (no multifd): ${why.message} asks for ${requested}, but the ${lacking.names.join(' and ')} host has no multifd`,
  };
  return { count: 1, explicit, why, noMultifd };
}

function defaultChannels(ctx: PlanContext): { requested: number; why: PlanReason } {
  const { o, source, destination } = ctx;
  const configured = o['vmferry.channels'].value;
  const cpus = Math.min(source.cpus ?? Infinity, destination.cpus ?? Infinity);
  const fit = Math.max(1, Math.floor(cpus / 2));
  if (!Number.isFinite(cpus) || fit >= configured) {
    return {
      requested: configured,
      why: { decision: 'channels', option: 'vmferry.channels', message: cite(o, 'vmferry.channels') },
    };
  }
  // Each channel is a sending and a receiving thread (plus, tunnelled, a relay on each side).
  // QEMU 7.2's multifd sender also busy-waits for a free channel when channels are slower than
  // it, burning a core: on 2-CPU hosts one stream measured faster than two (README, Benchmark).
  return {
    requested: fit,
    why: {
      decision: 'channels',
      option: 'vmferry.channels',
      capability: 'source.cpus,destination.cpus',
      message:
        `${cite(o, 'vmferry.channels')} sized down to ${fit} for the smaller host's ${cpus} CPUs ` +
        '(a channel per 2 CPUs; set vmferry.channels to choose)',
    },
  };
}

/**
 * The channels the migration uses: the request, down to 1 when post-copy is on
 * (QEMU 7.2 cannot combine it with multifd; post-copy only got that far if the
 * count was vmferry's default) or the naive tunnel carries it (one connection).
 */
export function decideChannels(
  request: ChannelRequest,
  postCopy: { value: boolean; option: string },
  transport: Transport,
  tunnel: TunnelMode,
): Decided<number> {
  if (request.noMultifd !== undefined) return { value: 1, reasons: [request.noMultifd] };
  if (tunnel === 'naive') {
    const message = `1 channel: the naive tunnel carries one connection (override); ${request.why.message} asked for ${request.count}`;
    return { value: 1, reasons: [{ ...request.why, message }] };
  }
  if (postCopy.value && request.count > 1) {
    const message =
      `1 channel: post-copy is permitted (${postCopy.option}) and QEMU 7.2 cannot combine it with multifd; the ` +
      `channel count was only vmferry's default (set [vmferry] channels to prefer multifd)`;
    return { value: 1, reasons: [{ decision: 'channels', option: postCopy.option, message }] };
  }
  const message =
    request.count > 1
      ? `${request.count} multifd channels: ${request.why.message}` +
        (transport === 'tunnelled' ? '; each channel gets its own TLS connection through the agents' : '')
      : `1 channel (no multifd): ${request.why.message}`;
  return { value: request.count, reasons: [{ ...request.why, message }] };
}
