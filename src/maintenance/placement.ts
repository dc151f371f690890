import type { PreflightResult } from '../policy/index.js';

/** A host a VM could move to, as the source agent sees it when placing VMs. */
export interface PlacementCandidate {
  name: string;
  address: string;
  /** Why it cannot be asked (unreachable, refused the certificate...); undefined when it answered. */
  unreachable?: string;
  maintenance: boolean;
  /** Memory it can still give VMs, after its own running VMs and incoming migrations, MiB. */
  freeMemoryMiB: number;
}

export interface PlacementVm {
  name: string;
  memoryMiB: number;
}

export interface Placement {
  vm: string;
  /** The chosen host, or undefined when none can take the VM. */
  destination: PlacementCandidate | undefined;
  /** Why each other candidate was passed over, and why the chosen one was chosen. */
  reasons: string[];
}

/**
 * Picks the destination for one VM: among the candidates that answered, are not in
 * maintenance, passed every pre-flight check for this VM and still have room for it
 * after what this placement already reserved there, the one with the most free memory
 * left (ties: by name), so VMs spread. Pure.
 */
export function chooseDestination(input: {
  vm: PlacementVm;
  candidates: readonly PlacementCandidate[];
  /** MiB already promised on each host (by name) to VMs placed earlier in the same drain. */
  reservedMiB: ReadonlyMap<string, number>;
  /** Hosts this VM must not go to (a failed earlier attempt, the source itself). */
  exclude?: ReadonlySet<string>;
  /** The destination's own pre-flight answer for this VM (memory is judged here instead). */
  preflight?: ReadonlyMap<string, readonly PreflightResult[]>;
}): Placement {
  const { vm } = input;
  const reasons: string[] = [];
  const fits: { c: PlacementCandidate; left: number }[] = [];
  for (const c of input.candidates) {
    if (input.exclude?.has(c.name) === true) {
      reasons.push(`${c.name}: excluded (an earlier attempt failed there, or it is the source)`);
      continue;
    }
    if (c.unreachable !== undefined) {
      reasons.push(`${c.name}: unreachable (${c.unreachable})`);
      continue;
    }
    if (c.maintenance) {
      reasons.push(`${c.name}: in maintenance mode`);
      continue;
    }
    const failed = (input.preflight?.get(c.name) ?? []).filter((r) => !r.ok && r.check !== 'memory');
    if (failed.length > 0) {
      reasons.push(`${c.name}: pre-flight ${failed.map((r) => `${r.check}: ${r.message}`).join('; ')}`);
      continue;
    }
    const left = c.freeMemoryMiB - (input.reservedMiB.get(c.name) ?? 0);
    if (left < vm.memoryMiB) {
      reasons.push(
        `${c.name}: not enough memory (${Math.max(0, Math.floor(left))} MiB free after reservations, ${vm.name} needs ${vm.memoryMiB} MiB)`,
      );
      continue;
    }
    fits.push({ c, left });
  }
  fits.sort((x, y) => y.left - x.left || x.c.name.localeCompare(y.c.name));
  const best = fits[0];
  if (best === undefined) return { vm: vm.name, destination: undefined, reasons };
  reasons.unshift(
    `${best.c.name}: chosen, most free memory (${Math.floor(best.left)} MiB before ${vm.name}'s ${vm.memoryMiB} MiB)`,
  );
  return { vm: vm.name, destination: best.c, reasons };
}

/**
 * Places several VMs in order (largest first, so big VMs find room before small
 * ones fill it), reserving each one's memory on its destination. Pure.
 */
export function placeAll(
  vms: readonly PlacementVm[],
  candidates: readonly PlacementCandidate[],
  preflight?: ReadonlyMap<string, ReadonlyMap<string, readonly PreflightResult[]>>,
): Placement[] {
  const reserved = new Map<string, number>();
  const ordered = [...vms].sort((x, y) => y.memoryMiB - x.memoryMiB || x.name.localeCompare(y.name));
  return ordered.map((vm) => {
    const p = chooseDestination({
      vm,
      candidates,
      reservedMiB: reserved,
      ...(preflight?.get(vm.name) !== undefined ? { preflight: preflight.get(vm.name) } : {}),
    });
    if (p.destination !== undefined)
      reserved.set(p.destination.name, (reserved.get(p.destination.name) ?? 0) + vm.memoryMiB);
    return p;
  });
}
