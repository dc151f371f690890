import { readFileSync } from 'node:fs';
import { checkConfig, optionsFrom, type ResolvedOptions } from '../config/index.js';
import { ConfigError } from '../errors.js';
import {
  planMigration,
  type HostCapabilities,
  type MigrationOverrides,
  type MigrationSettings,
} from '../policy/index.js';

/** Reads the operator's nova.conf ([libvirt] and [vmferry]); refuses a file nova would refuse. */
export function loadMigrationOptions(file: string | undefined): ResolvedOptions {
  if (file === undefined) return optionsFrom({});
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (err) {
    throw new ConfigError(`cannot read: ${err instanceof Error ? err.message : String(err)}`, { file });
  }
  const check = checkConfig(content, file);
  const first = check.errors[0];
  if (first !== undefined) throw first;
  if (check.options === null) throw new ConfigError('cannot be parsed', { file });
  return check.options;
}

/**
 * The plan for one migration (policy), reduced to what the driver acts on.
 * Operator overrides from `vmferry migrate` take part in the plan, so its
 * reasons still explain them; the rest come from nova.conf.
 */
export function planSettings(input: {
  options: ResolvedOptions;
  memoryMiB: number;
  source: HostCapabilities;
  destination: HostCapabilities;
  overrides: MigrationOverrides;
}): MigrationSettings {
  const o = input.overrides;
  const plan = planMigration({
    options: input.options,
    kind: 'live',
    memoryMiB: input.memoryMiB,
    source: input.source,
    destination: input.destination,
    overrides: {
      ...(o.transport !== undefined ? { transport: o.transport } : {}),
      ...(o.tls !== undefined ? { tls: o.tls } : {}),
      ...(o.channels !== undefined ? { channels: o.channels } : {}),
      ...(o.postCopy !== undefined ? { postCopy: o.postCopy } : {}),
      ...(o.autoConverge !== undefined ? { autoConverge: o.autoConverge } : {}),
      ...(o.bandwidthMiBps !== undefined ? { bandwidthMiBps: o.bandwidthMiBps } : {}),
    },
  });
  const reasons = plan.reasons.map((r) => r.message);
  if (o.completionTimeoutSeconds !== undefined) {
    reasons.push(
      `completion timeout ${o.completionTimeoutSeconds} s: requested for this migration (override)`,
    );
  }
  if (o.timeoutAction !== undefined)
    reasons.push(`timeout action ${o.timeoutAction}: requested for this migration (override)`);
  if (o.tunnel === 'naive') {
    reasons.push(
      'naive tunnel: one connection through one single-threaded relay, the benchmark baseline (override)',
    );
  }
  if (o.stallSeconds !== undefined)
    reasons.push(`stall timeout ${o.stallSeconds} s: requested for this migration (override)`);
  return {
    transport: plan.transport,
    tls: plan.tls,
    channels: o.tunnel === 'naive' ? 1 : plan.channels,
    tunnel: o.tunnel ?? 'multi',
    bandwidthMiBps: plan.bandwidthMiBps,
    maxBandwidthBytes: plan.qemuMaxBandwidthBytes,
    downtimeSteps: plan.downtimeSteps,
    completionTimeoutSeconds: o.completionTimeoutSeconds ?? plan.completionTimeoutSeconds,
    timeoutAction: o.timeoutAction ?? plan.timeoutAction,
    postCopy: plan.postCopy,
    autoConverge: plan.autoConverge,
    stallSeconds: o.stallSeconds ?? plan.stallTimeoutSeconds,
    reasons,
  };
}
