import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';
import type { Accelerator } from './vm-spec.js';

/** A CPU model as QEMU's query-cpu-definitions lists it, for one accelerator. */
export interface CpuModel {
  name: string;
  /** Features the host lacks for this model under that accelerator: usable only when empty. */
  unavailableFeatures: string[];
  migrationSafe: boolean;
}

export function cpuModelsFromQmp(
  list: readonly { name: string; 'unavailable-features'?: string[]; 'migration-safe'?: boolean }[],
): CpuModel[] {
  return list.map((c) => ({
    name: c.name,
    unavailableFeatures: c['unavailable-features'] ?? [],
    migrationSafe: c['migration-safe'] === true,
  }));
}

/**
 * Named models in the order a KVM host should prefer them, newest first; a
 * host is one vendor, so only one vendor's models are usable. Named, not
 * host-model: a named model is the same virtual CPU on every host that can run it.
 */
const KVM_PREFERENCE = [
  'SapphireRapids',
  'Icelake-Server',
  'Cascadelake-Server',
  'Skylake-Server',
  'Skylake-Client',
  'Broadwell',
  'Haswell',
  'IvyBridge',
  'SandyBridge',
  'Westmere',
  'Nehalem',
  'Penryn',
  'EPYC-Milan',
  'EPYC-Rome',
  'EPYC',
  'Opteron_G5',
  'Opteron_G4',
  'Opteron_G3',
  'Opteron_G2',
  'qemu64',
  'kvm64',
];

/**
 * The CPU model a new VM gets: qemu64 under TCG (emulated the same everywhere);
 * under KVM the newest named model whose features this host has (`kvmModels`,
 * from query-cpu-definitions under KVM), qemu64 when none is.
 */
export function defaultCpuModel(accel: Accelerator, kvmModels: readonly CpuModel[] | undefined): string {
  if (accel === 'tcg') return 'qemu64';
  const usable = new Set(
    (kvmModels ?? []).filter((m) => m.unavailableFeatures.length === 0).map((m) => m.name),
  );
  return KVM_PREFERENCE.find((name) => usable.has(name)) ?? 'qemu64';
}

/**
 * The CPU model to store in a new VM's spec: the one asked for, if this host's
 * QEMU knows it (`host` only under KVM: TCG cannot pass the host CPU through),
 * or the default.
 */
export function resolveCpuModel(
  vm: string,
  requested: string | undefined,
  host: { accelerator: Accelerator; cpuModels: readonly string[]; kvmCpuModels?: readonly CpuModel[] },
): string {
  if (requested === undefined) return defaultCpuModel(host.accelerator, host.kvmCpuModels);
  if (requested === 'host' && host.accelerator !== 'kvm') {
    throw new UsageError(`VM ${vm}: cpu "host" needs KVM, and this host runs guests under TCG`, {
      hint: 'leave cpu out (qemu64 under TCG) or name a model: qemu-system-x86_64 -cpu help',
    });
  }
  if (host.cpuModels.length > 0 && !host.cpuModels.includes(requested)) {
    throw new UsageError(
      `VM ${vm}: cpu ${JSON.stringify(requested)} is not a CPU model this host's QEMU knows`,
      {
        hint: 'qemu-system-x86_64 -cpu help lists them; leave cpu out for the default',
      },
    );
  }
  return requested;
}

/** What identifies a host's physical CPU, for VMs with cpu "host" (they move only between equal CPUs). */
export interface HostCpu {
  vendor: string;
  family: number;
  model: number;
  stepping: number;
  modelName: string;
  /** sha256 of the sorted feature flags: equal flags, equal digest. */
  flagsDigest: string;
}

/** The first processor of /proc/cpuinfo. */
export function hostCpuFromCpuinfo(text: string): HostCpu {
  const first = text.split(/\n\s*\n/)[0] ?? '';
  const field = (key: string): string =>
    new RegExp(`^${key}\\s*:\\s*(.*)$`, 'm').exec(first)?.[1]?.trim() ?? '';
  const flags = field('flags').split(/\s+/).filter(Boolean).sort();
  return {
    vendor: field('vendor_id'),
    family: Number(field('cpu family')) || 0,
    model: Number(field('model')) || 0,
    stepping: Number(field('stepping')) || 0,
    modelName: field('model name'),
    flagsDigest: createHash('sha256').update(flags.join(' ')).digest('hex').slice(0, 16),
  };
}

/** Why a VM with cpu "host" cannot move between these hosts' CPUs, or undefined when it can. */
export function hostCpuMismatch(
  source: HostCpu | undefined,
  destination: HostCpu | undefined,
): string | undefined {
  if (source === undefined || destination === undefined) return 'one of the hosts did not report its CPU';
  const differs = (['vendor', 'family', 'model', 'stepping', 'flagsDigest'] as const).filter(
    (k) => source[k] !== destination[k],
  );
  if (differs.length === 0) return undefined;
  return `the hosts' CPUs differ in ${differs.join(', ')} (${source.modelName} vs ${destination.modelName})`;
}
