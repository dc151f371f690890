import {
  computeMigrationFlags,
  describeSource,
  findOption,
  type OptionName,
  type ResolvedOption,
  type ResolvedOptions,
} from '../config/index.js';
import { PlanError, UsageError } from '../errors.js';
import type { HostCapabilities } from '../qemu/index.js';
import type { DiskDecisionInput } from './decide-disks.js';
import type { TransportFigures } from './transport-figures.js';
import type { MigrationOverrides } from './types.js';

export type MigrationKind = 'live' | 'block';

export interface PlanInput {
  readonly options: ResolvedOptions;
  /** Without `disks`: the kind asked for. With them, a migration that copies a disk is a block migration. */
  readonly kind: MigrationKind;
  readonly memoryMiB: number;
  /** Local disks a block migration copies, GiB each (nova counts each as at least 2 GiB); from `disks` when given. */
  readonly disksGiB?: readonly number[];
  /** The VM's disks as both hosts see them: each is shared or copied (decideDisks). */
  readonly disks?: Omit<DiskDecisionInput, 'incremental'>;
  readonly source: HostCapabilities;
  readonly destination: HostCapabilities;
  readonly overrides?: Readonly<MigrationOverrides>;
  /** Measured throughput of each secure transport to this destination (calibration, past migrations). */
  readonly transportFigures?: TransportFigures;
}

/** The input, checked, with nova's flag rules applied once for every decision to read. */
export interface PlanContext {
  readonly o: ResolvedOptions;
  readonly kind: MigrationKind;
  readonly memoryMiB: number;
  readonly disksGiB: readonly number[];
  readonly source: HostCapabilities;
  readonly destination: HostCapabilities;
  readonly overrides: Readonly<MigrationOverrides>;
  readonly transportFigures: TransportFigures;
  /** nova 13's rules: the live/block flag lists decide. */
  readonly legacy: boolean;
  /** The flag list option of this kind of migration. */
  readonly listOption: 'libvirt.live_migration_flag' | 'libvirt.block_migration_flag';
  /** VIR_MIGRATE_* flags nova would use for this kind of migration. */
  readonly novaFlags: ReadonlySet<string>;
}

/** The multifd channel counts vmferry accepts anywhere: the range of [vmferry] channels. */
export const CHANNEL_RANGE = optionRange('vmferry.channels');

/** The range of an int option, from the option table (limits are stated there once). */
export function optionRange(name: OptionName): { min: number; max: number } {
  const row = findOption(name);
  if (row?.min === undefined || row.max === undefined) throw new Error(`option ${name} has no range`);
  return { min: row.min, max: row.max };
}

/** A channel count from an operator or a peer, checked against {@link CHANNEL_RANGE}; `what` names it. */
export function checkChannels(value: unknown, what = 'channels'): number {
  const { min, max } = CHANNEL_RANGE;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(
      `${what} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** `name = value (where it came from)`, as the reasons quote options. */
export function cite(options: ResolvedOptions, name: OptionName): string {
  const o = options[name] as ResolvedOption<string | number | boolean | null>;
  const value = o.value === null ? 'unset' : String(o.value);
  return `${name} = ${value} (${describeSource(o.source)})`;
}

/** Which host lacks a capability, and how a reason names it. */
export function hostsLacking(
  source: HostCapabilities,
  destination: HostCapabilities,
  cap: Exclude<keyof HostCapabilities, 'cpus' | 'qemuVersion' | 'tunnelRelay'>,
): { names: string[]; capability: string } {
  const names = [...(source[cap] ? [] : ['source']), ...(destination[cap] ? [] : ['destination'])];
  return {
    names,
    capability: names.map((n) => `${n}.${cap}`).join(',') || `source.${cap},destination.${cap}`,
  };
}

const OVERRIDE_CHOICES = {
  transport: ['native', 'tunnelled'],
  tunnel: ['multi', 'naive'],
  timeoutAction: ['abort', 'force_complete'],
  tls: [true, false],
  autoConverge: [true, false],
  postCopy: [true, false],
  block: ['all', 'auto'],
  keepSourceDisks: [true, false],
} as const;

/** Per-migration overrides as the API received them: every field checked, a bad one named. */
function checkOverrides(overrides: Readonly<MigrationOverrides>): void {
  for (const [field, allowed] of Object.entries(OVERRIDE_CHOICES)) {
    const value = (overrides as Record<string, unknown>)[field];
    if (value !== undefined && !(allowed as readonly unknown[]).includes(value))
      throw new UsageError(`${field} must be ${allowed.join(' or ')}, got ${JSON.stringify(value)}`);
  }
  if (overrides.channels !== undefined) checkChannels(overrides.channels);
  for (const [field, value] of [
    ['bandwidthMiBps', overrides.bandwidthMiBps],
    ['completionTimeoutSeconds', overrides.completionTimeoutSeconds],
    ['stallSeconds', overrides.stallSeconds],
    ['diskStallSeconds', overrides.diskStallSeconds],
  ] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 0))
      throw new UsageError(`${field} must be a whole number >= 0, got ${value}`);
  }
}

/** Checks the input (a bad field throws naming it) and reads nova's flags. */
export function planContext(input: PlanInput): PlanContext {
  if (input.kind !== 'live' && input.kind !== 'block')
    throw new UsageError(`kind must be live or block, got ${String(input.kind)}`);
  if (!Number.isFinite(input.memoryMiB) || input.memoryMiB <= 0) {
    throw new UsageError(`memoryMiB must be a number > 0, got ${input.memoryMiB}`);
  }
  for (const d of input.disksGiB ?? []) {
    if (!Number.isFinite(d) || d < 0) throw new UsageError(`disk sizes must be numbers >= 0 GiB, got ${d}`);
  }
  const overrides = input.overrides ?? {};
  checkOverrides(overrides);
  const nova = computeMigrationFlags(input.options);
  const invalid = nova.errors[0];
  if (invalid !== undefined) throw new PlanError(invalid.message, { hint: invalid.hint });
  return {
    o: input.options,
    kind: input.kind,
    memoryMiB: input.memoryMiB,
    disksGiB: input.disksGiB ?? [],
    source: input.source,
    destination: input.destination,
    overrides,
    transportFigures: input.transportFigures ?? {},
    legacy: nova.mode === 'legacy',
    listOption: input.kind === 'live' ? 'libvirt.live_migration_flag' : 'libvirt.block_migration_flag',
    novaFlags: new Set(input.kind === 'live' ? nova.live : nova.block),
  };
}
