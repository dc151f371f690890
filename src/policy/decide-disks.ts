import { PlanError } from '../errors.js';
import type { BlockMode, Decided, DestinationDiskView, DiskPlan, PlanReason, SourceDisk } from './types.js';

export interface DiskDecisionInput {
  /** Undefined: a live migration, which copies no disk. */
  mode: BlockMode | undefined;
  /** Why a block migration was asked for: by an override (`--block`), or by the option named. */
  modeReason: { option?: string | undefined; message: string };
  /** nova's block flags have VIR_MIGRATE_NON_SHARED_INC: a top image can be copied alone. */
  incremental: boolean;
  disks: readonly SourceDisk[];
  /** The destination's answer (block migrations only). */
  destination: readonly DestinationDiskView[];
  destinationHost: string;
}

function name(d: SourceDisk): string {
  return `disk ${d.disk} (${d.path}, ${d.storage})`;
}

/**
 * How each disk of a VM crosses: a live migration copies none (and refuses a VM
 * with a local disk); `--block` copies every local disk and keeps shared ones;
 * `--block auto` keeps every disk the destination already sees as the same file
 * and copies the others. A copy of a qcow2 on a backing image takes only the top
 * image when nova's block flags allow it (NON_SHARED_INC, as libvirt's shallow
 * copy) and the destination has the same backing image; otherwise all of it.
 * Never overwrites a file at the destination. Pure.
 */
export function decideDisks(input: DiskDecisionInput): Decided<DiskPlan[]> {
  const plans = input.disks.map((d) => decideDisk(input, d));
  const reasons: PlanReason[] = plans.map((p) => ({
    decision: 'disks',
    // What drove it: the destination's view of the disk in a block migration, the spec's storage otherwise.
    ...(input.mode === undefined
      ? { option: `disks[${p.disk}].storage` }
      : { capability: `destination.disks[${p.disk}]` }),
    message: `${name(input.disks.find((d) => d.disk === p.disk)!)}: ${p.reason}`,
  }));
  if (input.mode !== undefined && plans.length > 0) {
    reasons.unshift({
      decision: 'disks',
      option: input.modeReason.option,
      message: `block migration (${input.mode}): ${input.modeReason.message}`,
    });
  }
  return { value: plans, reasons };
}

function decideDisk(input: DiskDecisionInput, d: SourceDisk): DiskPlan {
  const base = { disk: d.disk, format: d.format, virtualSize: d.virtualSize };
  const host = input.destinationHost;
  if (input.mode === undefined) {
    if (d.storage === 'local') {
      throw new PlanError(
        `${name(d)} is on this host's own storage: a live migration would leave it behind`,
        {
          hint: 'migrate with --block to copy local disks (or --block auto to copy only what the destination does not share)',
        },
      );
    }
    return { ...base, action: 'shared', reason: 'shared storage: the destination opens the same file' };
  }
  const view = input.destination.find((v) => v.disk === d.disk);
  if (view === undefined) throw new PlanError(`${host} said nothing about ${name(d)}`);
  const shared = input.mode === 'auto' ? view.sameFile : d.storage === 'shared';
  if (shared) {
    if (!view.sameFile) {
      throw new PlanError(`${name(d)} is not the same file on ${host}: ${view.why}`, {
        hint: 'make it visible there at the same path, or migrate with --block auto to copy it',
      });
    }
    return { ...base, action: 'shared', reason: `not copied: ${host} sees the same file (${view.why})` };
  }
  if (view.exists) {
    throw new PlanError(
      `${name(d)}: a file is already at its path on ${host} and vmferry never overwrites one`,
      {
        hint:
          view.sameFile || input.mode === 'auto'
            ? `it is ${view.sameFile ? 'the same file (shared storage): use --block auto' : `not the same file (${view.why}): remove it there`}`
            : 'remove it there, or use --block auto if it is the same file on shared storage',
      },
    );
  }
  const kind = copyKind(input, d, view);
  const below = kind.sync === 'full' ? (d.backing?.identity.sizeBytes ?? 0) : 0;
  return { ...base, action: 'copy', ...kind, copyBytes: (d.allocatedBytes ?? d.virtualSize) + below };
}

function copyKind(
  input: DiskDecisionInput,
  d: SourceDisk,
  view: DestinationDiskView,
): Pick<DiskPlan, 'sync' | 'backing' | 'reason'> {
  const why = input.mode === 'auto' ? `${input.destinationHost} does not see it (${view.why}); ` : '';
  if (d.backing === undefined) return { sync: 'full', reason: `${why}copied whole` };
  const backing = `its backing image ${d.backing.name}`;
  if (!input.incremental) {
    return {
      sync: 'full',
      reason: `${why}copied whole, ${backing} included: nova's block flags lack VIR_MIGRATE_NON_SHARED_INC`,
    };
  }
  if (view.backing?.present !== true) {
    return {
      sync: 'full',
      reason: `${why}copied whole, ${backing} included: ${view.backing?.why ?? `${input.destinationHost} did not look for it`}`,
    };
  }
  return {
    sync: 'top',
    backing: d.backing,
    reason: `${why}top image only (VIR_MIGRATE_NON_SHARED_INC): ${input.destinationHost} has ${backing} (${view.backing.why})`,
  };
}
