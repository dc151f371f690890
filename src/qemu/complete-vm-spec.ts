import { randomBytes } from 'node:crypto';
import { resolveCpuModel, type CpuModel } from './cpu-models.js';
import { resolveMachineType, type MachineType } from './machine-types.js';
import type { Accelerator, VmSpec, VmSpecDraft } from './vm-spec.js';

/** What a host offers that a new VM's spec is completed from. */
export interface SpecDefaults {
  accelerator: Accelerator;
  machines: readonly MachineType[];
  /** Every CPU model name this QEMU knows (empty: not checked). */
  cpuModels: readonly string[];
  /** Models and what they lack under KVM, when this host runs KVM. */
  kvmCpuModels?: readonly CpuModel[];
}

/**
 * A locally administered unicast MAC in QEMU's 52:54:00 range, the last three
 * bytes random (not derived from the VM name: two VMs of one name on two
 * clouds must not clash on a shared network).
 */
export function generateMac(random: (n: number) => Buffer = randomBytes): string {
  const tail = [...random(3)].map((b) => b.toString(16).padStart(2, '0'));
  return ['52', '54', '00', ...tail].join(':');
}

/**
 * Fills in what the operator left out, once, when the VM is created: the
 * machine type (an alias resolved to its versioned type), the CPU model and
 * each NIC's MAC. The result is stored and travels with the VM, so both ends
 * of a migration build the same hardware even when their QEMUs differ.
 */
export function completeVmSpec(
  draft: VmSpecDraft,
  host: SpecDefaults,
  random: (n: number) => Buffer = randomBytes,
): VmSpec {
  const taken = new Set(draft.nics.flatMap((n) => (n.mac !== undefined ? [n.mac] : [])));
  const nics = draft.nics.map((n) => {
    if (n.mac !== undefined) return { bridge: n.bridge, mac: n.mac };
    let mac = generateMac(random);
    while (taken.has(mac)) mac = generateMac(random);
    taken.add(mac);
    return { bridge: n.bridge, mac };
  });
  return {
    ...draft,
    machine: resolveMachineType(draft.name, draft.machine, host.machines),
    cpu: resolveCpuModel(draft.name, draft.cpu, host),
    nics,
  };
}
