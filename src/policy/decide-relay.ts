import { UsageError } from '../errors.js';
import type { TunnelRelay, TunnelRelayKind } from '../qemu/index.js';
import type { PlanReason, Transport, TunnelMode } from './types.js';

/** `[vmferry] tunnel_relay`: a relay by name, or `auto` (native when it is built). */
export type TunnelRelaySetting = 'auto' | TunnelRelayKind;

/**
 * Which relay carries this agent's end of tunnelled migrations, decided once at
 * start-up from the option and whether the native relay is built here. `native`
 * asked for but missing is refused: an operator who names it wants to know.
 */
export function decideTunnelRelay(
  setting: TunnelRelaySetting,
  native: { available: true } | { available: false; reason: string },
): TunnelRelay {
  const option = `[vmferry] tunnel_relay = ${setting}`;
  if (setting === 'node') return { kind: 'node', reason: `the TypeScript relay (${option})` };
  if (native.available) {
    return {
      kind: 'native',
      reason:
        setting === 'native'
          ? `the native relay (${option})`
          : `the native relay (${option}, and it is built)`,
    };
  }
  if (setting === 'native') {
    throw new UsageError(`${option}, but the native relay cannot run here: ${native.reason}`, {
      hint: 'run node scripts/setup.mjs (it needs gcc and libssl-dev), or set tunnel_relay = auto or node',
    });
  }
  return {
    kind: 'node',
    reason: `the TypeScript relay (${option}, and the native one is missing: ${native.reason})`,
  };
}

/**
 * The plan's word on the relays of a tunnelled migration: each host says which one
 * it runs (its host summary); one that does not say runs the TypeScript relay.
 * A plan made without the hosts' word (`vmferry plan --config`) says nothing.
 */
export function describeRelays(
  transport: Transport,
  tunnel: TunnelMode,
  source: TunnelRelay | undefined,
  destination: TunnelRelay | undefined,
  override?: TunnelRelayKind,
): PlanReason[] {
  if (transport !== 'tunnelled' || tunnel !== 'multi') return [];
  if (override !== undefined) {
    return [{ decision: 'tunnel', message: `relay: ${override} at both ends (override)` }];
  }
  if (source === undefined && destination === undefined) return [];
  const side = (r: TunnelRelay | undefined): string =>
    r?.reason ?? 'the TypeScript relay (an agent that does not say)';
  return [
    {
      decision: 'tunnel',
      option: 'vmferry.tunnel_relay',
      message: `relay: source ${source?.kind ?? 'node'}, ${side(source)}; destination ${destination?.kind ?? 'node'}, ${side(destination)}`,
    },
  ];
}
