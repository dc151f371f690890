import { describeSource } from '../config/index.js';
import { PlanError } from '../errors.js';
import { cite, hostsLacking, type PlanContext } from './plan-input.js';
import { benchmarkedDefault, chooseFigures, fasterByFigures, figureOrigin } from './transport-figures.js';
import type { Decided, Encryption, PlanReason, Transport, TunnelMode } from './types.js';

const BOTH_TLS = 'source.nativeTls,destination.nativeTls';

/** live_migration_tunnelled, or with nova 13's rules the flag list's VIR_MIGRATE_TUNNELLED, and how to quote it. */
function tunnelledSetting(ctx: PlanContext): { value: boolean | null; option: string; text: string } {
  const { o, legacy, listOption, novaFlags } = ctx;
  const value = o['libvirt.live_migration_tunnelled'].value;
  if (value === null && legacy) {
    const inList = novaFlags.has('VIR_MIGRATE_TUNNELLED');
    return {
      value: inList,
      option: listOption,
      text: `${listOption} ${inList ? 'has' : 'has no'} VIR_MIGRATE_TUNNELLED (${describeSource(o[listOption].source)})`,
    };
  }
  return {
    value,
    option: 'libvirt.live_migration_tunnelled',
    text: cite(o, 'libvirt.live_migration_tunnelled'),
  };
}

function bothHostsTls(ctx: PlanContext): boolean {
  return ctx.source.nativeTls && ctx.destination.nativeTls;
}

/** An override for the transport, or for clear text (which only exists natively). */
function transportOverridden(ctx: PlanContext): boolean {
  return ctx.overrides.transport !== undefined || ctx.overrides.tls === false;
}

/**
 * The transport (live_migration_tunnelled, tri-state): True = tunnelled through
 * vmferry's agents; False = native; unset = the faster secure transport: by the
 * figures measured to this destination (calibration, else past migrations),
 * else by the benchmark of the QEMU version in use; tunnelled whenever a host
 * cannot do QEMU TLS, so that unset never means clear text.
 */
export function decideTransport(ctx: PlanContext): Decided<Transport> {
  const reasons: PlanReason[] = [];
  let value: Transport;
  const tri = tunnelledSetting(ctx);
  if (transportOverridden(ctx)) {
    value = ctx.overrides.transport ?? 'native';
    reasons.push({ decision: 'transport', message: `${value}: requested for this migration (override)` });
  } else if (tri.value !== null) {
    value = tri.value ? 'tunnelled' : 'native';
    reasons.push({ decision: 'transport', option: tri.option, message: `${value}: ${tri.text}` });
  } else if (bothHostsTls(ctx) && ctx.o['libvirt.live_migration_with_native_tls'].value) {
    value = 'native';
    reasons.push({
      decision: 'transport',
      option: 'libvirt.live_migration_with_native_tls',
      capability: BOTH_TLS,
      message: `native with QEMU TLS: ${tri.text} and ${cite(ctx.o, 'libvirt.live_migration_with_native_tls')} asks for it`,
    });
  } else if (bothHostsTls(ctx)) {
    const faster = fasterSecureTransport(ctx, tri.text);
    value = faster.value;
    reasons.push(...faster.reasons);
  } else {
    value = 'tunnelled';
    const noTls = hostsLacking(ctx.source, ctx.destination, 'nativeTls');
    reasons.push({
      decision: 'transport',
      option: 'libvirt.live_migration_tunnelled',
      capability: noTls.capability,
      message: `tunnelled: ${tri.text} and the ${noTls.names.join(' and ')} host cannot do QEMU TLS; the tunnel keeps it encrypted`,
    });
  }
  const first = reasons[0];
  if (value === 'tunnelled' && ctx.kind === 'block') {
    reasons.push({
      decision: 'transport',
      option: first?.option,
      capability: first?.capability,
      message:
        "block migration through the tunnel: unlike libvirt's tunnel, vmferry's agents must relay the disk stream too" +
        (first?.option === undefined && first?.capability === undefined ? ' (override)' : ''),
    });
  }
  return { value, reasons };
}

/**
 * Both hosts can do either secure transport: the faster one by the figures for
 * this pair of hosts, else the benchmarked default for the source's QEMU.
 */
function fasterSecureTransport(ctx: PlanContext, setting: string): Decided<Transport> {
  const chosen = chooseFigures(ctx.transportFigures);
  const faster = fasterByFigures(chosen);
  const base = {
    decision: 'transport',
    option: 'libvirt.live_migration_tunnelled',
    capability: BOTH_TLS,
  } as const;
  if (faster !== undefined) {
    const value: Transport = faster.transport === 'tunnelled' ? 'tunnelled' : 'native';
    const name = value === 'tunnelled' ? 'tunnelled' : 'native with QEMU TLS';
    const message = `${name}: ${setting}, both hosts can do either secure transport and it was faster to this host: ${faster.text}`;
    return { value, reasons: [{ ...base, message }] };
  }
  const only = chosen.tunnelled ?? chosen.nativeTls;
  const partial =
    only === undefined
      ? 'no figures for this pair of hosts (vmferry host calibrate --peer measures them)'
      : `figures for only the ${chosen.tunnelled !== undefined ? 'tunnel' : 'native TLS'} to this host (${only.gbps.toFixed(1)} Gbit/s, ${figureOrigin(only)})`;
  const { row, match } = benchmarkedDefault(ctx.source.qemuVersion ?? ctx.destination.qemuVersion);
  const name = row.transport === 'tunnelled' ? 'tunnelled' : 'native with QEMU TLS';
  const message = `${name}: ${setting}, both hosts can do either secure transport, ${partial}; the default for ${match}: ${row.evidence}`;
  return { value: row.transport, reasons: [{ ...base, message }] };
}

/**
 * Who encrypts the stream. Tunnelled: the agents' TLS, always. Native: QEMU TLS
 * when both hosts can; otherwise clear text only if [vmferry] permit_cleartext
 * allows it (or the override asks for it and it allows it), else a PlanError:
 * vmferry never chooses clear text by itself.
 */
export function decideEncryption(ctx: PlanContext, transport: Decided<Transport>): Decided<Encryption> {
  if (transport.value === 'tunnelled') {
    if (ctx.overrides.tls === false)
      throw new PlanError('the tunnelled transport is always encrypted; tls = false cannot apply to it');
    const t = transport.reasons[0];
    const reason: PlanReason = {
      decision: 'tls',
      option: t?.option,
      capability: t?.capability,
      message:
        'TLS between the vmferry agents (mutually authenticated), because the transport is tunnelled' +
        (t?.option === undefined && t?.capability === undefined ? ' (override)' : '') +
        '; QEMU itself only talks to its local agent',
    };
    return { value: 'agent-tls', reasons: [reason] };
  }
  if (transportOverridden(ctx)) return nativeEncryption(ctx, 'the override');
  const tri = tunnelledSetting(ctx);
  if (tri.value === false) return nativeEncryption(ctx, tri.text);
  const reason: PlanReason = {
    decision: 'tls',
    capability: BOTH_TLS,
    message:
      'QEMU TLS (tls-creds-x509 with vmferry certificates) on both hosts, every channel encrypted by QEMU itself',
  };
  return { value: 'qemu-tls', reasons: [reason] };
}

/** Native transport chosen by `driver` (an option or the override): QEMU TLS, permitted clear text, or a PlanError. */
function nativeEncryption(ctx: PlanContext, driver: string): Decided<Encryption> {
  const { o, overrides } = ctx;
  const permitted = o['vmferry.permit_cleartext'].value;
  if (overrides.tls === false) {
    if (!permitted) {
      throw new PlanError(
        'clear text was requested for this migration, but vmferry does not send memory in clear text',
        { hint: 'set [vmferry] permit_cleartext = True to allow it (for benchmarks on a trusted link)' },
      );
    }
    const message = `CLEAR TEXT: requested for this migration (override) and allowed by ${cite(o, 'vmferry.permit_cleartext')}`;
    return { value: 'none', reasons: [{ decision: 'tls', option: 'vmferry.permit_cleartext', message }] };
  }
  if (bothHostsTls(ctx)) {
    const nativeTls = cite(o, 'libvirt.live_migration_with_native_tls');
    const message = o['libvirt.live_migration_with_native_tls'].value
      ? `QEMU TLS on both hosts, as ${nativeTls} asks`
      : `${nativeTls}, but vmferry does not send memory in clear text: both hosts can do QEMU TLS, so it is used`;
    const reason = {
      decision: 'tls',
      option: 'libvirt.live_migration_with_native_tls',
      capability: BOTH_TLS,
      message,
    } as const;
    return { value: 'qemu-tls', reasons: [reason] };
  }
  const noTls = hostsLacking(ctx.source, ctx.destination, 'nativeTls');
  if (permitted && overrides.tls !== true) {
    const message =
      `CLEAR TEXT: the ${noTls.names.join(' and ')} host cannot do QEMU TLS and ` +
      `${cite(o, 'vmferry.permit_cleartext')} allows guest memory to cross the network unencrypted`;
    const reason = {
      decision: 'tls',
      option: 'vmferry.permit_cleartext',
      capability: noTls.capability,
      message,
    };
    return { value: 'none', reasons: [reason as PlanReason] };
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
}

/**
 * The tunnel's relay: vmferry's multi-process relay, or on request the naive one
 * (one connection through one thread: the benchmark's baseline, one channel only).
 */
export function decideTunnel(ctx: PlanContext): Decided<TunnelMode> {
  if (ctx.overrides.tunnel !== 'naive') return { value: 'multi', reasons: [] };
  const message =
    'naive tunnel: one connection through one single-threaded relay, the benchmark baseline (override)';
  return { value: 'naive', reasons: [{ decision: 'tunnel', message }] };
}
