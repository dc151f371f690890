import { PlanError } from '../errors.js';
import { hostCpuMismatch, type DiskIdentity, type HostCpu, type VmSpec } from '../qemu/index.js';

export type { DiskIdentity };

/** One check made before a migration prepares anything on the destination. */
export interface PreflightResult {
  check: string;
  ok: boolean;
  message: string;
  hint?: string;
}

/** What the checks need to know about a host. */
export interface PreflightHost {
  name: string;
  accelerator: 'kvm' | 'tcg';
  /** The physical CPU, for VMs with cpu "host". */
  hostCpu?: HostCpu | undefined;
}

/**
 * Both hosts must run guests under the same accelerator: QEMU cannot load a
 * KVM guest's CPU state into TCG or back, and under TCG vmferry gives guests a
 * RAM size that differs from KVM's (the QEMU 7.2 dirty-bitmap workaround), so
 * such a migration would fail midway after moving most of the memory.
 */
export function checkAccelerators(source: PreflightHost, destination: PreflightHost): PreflightResult {
  if (source.accelerator === destination.accelerator) {
    return {
      check: 'accelerator',
      ok: true,
      message: `both hosts run guests under ${source.accelerator.toUpperCase()}`,
    };
  }
  return {
    check: 'accelerator',
    ok: false,
    message: `${source.name} runs guests under ${source.accelerator.toUpperCase()} and ${destination.name} under ${destination.accelerator.toUpperCase()}: a guest cannot move between them`,
    hint: 'migrate to a host with the same accelerator, or set the same [vmferry] accel on both hosts',
  };
}

/**
 * A VM with cpu "host" sees the host's own CPU model and features, so it may
 * only move to a host whose CPU is the same; a named model moves anywhere
 * its QEMU knows it.
 */
export function checkHostCpu(
  vmCpu: string,
  source: PreflightHost,
  destination: PreflightHost,
): PreflightResult {
  if (vmCpu !== 'host') return { check: 'cpu', ok: true, message: `the VM has the named CPU model ${vmCpu}` };
  const mismatch = hostCpuMismatch(source.hostCpu, destination.hostCpu);
  if (mismatch === undefined) {
    return { check: 'cpu', ok: true, message: `the VM has cpu "host" and both hosts have the same CPU` };
  }
  return {
    check: 'cpu',
    ok: false,
    message: `the VM has cpu "host" and cannot move from ${source.name} to ${destination.name}: ${mismatch}`,
    hint: 'a VM with cpu "host" moves only between hosts with the same CPU; give it a named model',
  };
}

/** What a destination can give VMs, from /proc/meminfo and what it has promised (GET /v1/host `capacity`). */
export interface HostCapacity {
  totalMiB: number;
  /** MemAvailable: what the kernel could give without swapping. */
  availableMiB: number;
  /**
   * Promised but not yet taken: the part of running VMs' memory they have not touched,
   * incoming migrations' whole memory, and the host's own reserve
   * (nova's `[DEFAULT] reserved_host_memory_mb`).
   */
  reservedMiB: number;
  /** availableMiB - reservedMiB: what one more VM may have. */
  freeForVmsMiB: number;
}

/** A host in maintenance mode (being drained, patched) accepts no incoming migration. */
export function checkMaintenance(host: string, maintenance: boolean): PreflightResult {
  if (!maintenance) return { check: 'maintenance', ok: true, message: `${host} is not in maintenance mode` };
  return {
    check: 'maintenance',
    ok: false,
    message: `${host} is in maintenance mode: it accepts no incoming migration`,
    hint: `choose another destination, or end it: vmferry host maintenance off --agent ${host}'s address`,
  };
}

/** The destination can hold the VM's memory after everything it already promised. */
export function checkMemory(
  vm: { name: string; memoryMiB: number },
  host: string,
  capacity: HostCapacity,
): PreflightResult {
  const free = Math.floor(capacity.freeForVmsMiB);
  if (vm.memoryMiB <= free) {
    return {
      check: 'memory',
      ok: true,
      message: `${host} has ${free} MiB free for VMs, ${vm.name} needs ${vm.memoryMiB} MiB`,
    };
  }
  return {
    check: 'memory',
    ok: false,
    message: `${host} has ${Math.max(0, free)} MiB free for VMs (${Math.floor(capacity.availableMiB)} MiB available, ${Math.ceil(capacity.reservedMiB)} MiB promised to VMs, incoming migrations and the host), ${vm.name} needs ${vm.memoryMiB} MiB`,
    hint: 'choose another destination, or move or stop VMs there first',
  };
}

/** The destination's QEMU must offer the VM's (versioned) machine type, or it cannot rebuild its hardware. */
export function checkMachine(machine: string, host: string, machines: readonly string[]): PreflightResult {
  if (machines.includes(machine))
    return { check: 'machine', ok: true, message: `${host}'s QEMU offers machine type ${machine}` };
  return {
    check: 'machine',
    ok: false,
    message: `${host}'s QEMU does not offer machine type ${machine}`,
    hint: `upgrade QEMU on ${host}, or migrate to a host whose QEMU offers ${machine}`,
  };
}

/** A named CPU model must be known to the destination's QEMU (cpu "host" is judged by {@link checkHostCpu}). */
export function checkCpuModel(cpu: string, host: string, cpuModels: readonly string[]): PreflightResult {
  if (cpu === 'host' || cpuModels.includes(cpu))
    return {
      check: 'cpu-model',
      ok: true,
      message:
        cpu === 'host'
          ? 'cpu "host" (checked against the host CPUs)'
          : `${host}'s QEMU knows CPU model ${cpu}`,
    };
  return {
    check: 'cpu-model',
    ok: false,
    message: `${host}'s QEMU does not know CPU model ${cpu}`,
    hint: `migrate to a host whose QEMU knows ${cpu}`,
  };
}

/** "7.2.22" -> [7, 2, 22]; missing parts count as 0. */
function versionParts(v: string): number[] {
  return v.split('.').map((p) => Number.parseInt(p, 10) || 0);
}

/** QEMU streams migrate forward, not back: the destination's QEMU must not be older than the source's. */
export function checkQemuVersion(
  source: { name: string; qemuVersion: string },
  destination: { name: string; qemuVersion: string },
): PreflightResult {
  const s = versionParts(source.qemuVersion);
  const d = versionParts(destination.qemuVersion);
  let cmp = 0;
  for (let i = 0; i < Math.max(s.length, d.length) && cmp === 0; i++) cmp = (d[i] ?? 0) - (s[i] ?? 0);
  if (cmp >= 0) {
    return {
      check: 'qemu-version',
      ok: true,
      message: `QEMU ${destination.qemuVersion} on ${destination.name} is not older than ${source.qemuVersion} on ${source.name}`,
    };
  }
  return {
    check: 'qemu-version',
    ok: false,
    message: `QEMU ${destination.qemuVersion} on ${destination.name} is older than ${source.qemuVersion} on ${source.name}`,
    hint: `upgrade QEMU on ${destination.name} first`,
  };
}

/** What the destination found at a shared disk's path: its identity, or why it has none. */
export type DiskLookup = DiskIdentity | { path: string; missing: string };

/** Every shared disk must be the same file on the destination: there, same size, same fingerprint. */
export function checkSharedDisks(
  source: readonly DiskIdentity[],
  destination: readonly DiskLookup[],
  host: string,
): PreflightResult[] {
  return source.map((s, i) => {
    const d = destination.find((x) => x.path === s.path);
    const check = `disk ${i}`;
    if (d === undefined || 'missing' in d) {
      return {
        check,
        ok: false,
        message: `shared disk ${s.path} is not there on ${host}${d !== undefined && 'missing' in d ? ` (${d.missing})` : ''}`,
        hint: `make ${s.path} visible on ${host} (shared storage), or block-migrate the disk`,
      };
    }
    if (d.sizeBytes !== s.sizeBytes || d.fingerprint !== s.fingerprint) {
      const what =
        d.sizeBytes !== s.sizeBytes
          ? `its size is ${d.sizeBytes} bytes there, ${s.sizeBytes} here`
          : 'its first or last MiB differs';
      return {
        check,
        ok: false,
        message: `shared disk ${s.path} on ${host} is not the same file as on the source: ${what}`,
        hint: `the path must show the same shared file on both hosts; check the mount on ${host}`,
      };
    }
    return { check, ok: true, message: `shared disk ${s.path} is the same file on ${host}` };
  });
}

/** Every bridge the VM's NICs need must exist on the destination. */
export function checkBridges(
  bridges: readonly string[],
  host: string,
  present: (bridge: string) => boolean,
): PreflightResult[] {
  return [...new Set(bridges)].map((bridge) =>
    present(bridge)
      ? { check: `bridge ${bridge}`, ok: true, message: `bridge ${bridge} exists on ${host}` }
      : {
          check: `bridge ${bridge}`,
          ok: false,
          message: `bridge ${bridge} does not exist on ${host}`,
          hint: `create ${bridge} on ${host} (ip link add ${bridge} type bridge) or migrate elsewhere`,
        },
  );
}

/** What the destination's own options say about a stream it is asked to take. */
export interface IncomingStreamPolicy {
  /** The destination host's name. */
  host: string;
  /** Its [vmferry] permit_cleartext: may memory arrive unencrypted? */
  permitCleartext: boolean;
  /** Where its QEMU would listen for a native stream. */
  migrationAddress: string;
  /** Whether an operator set that address (--migration-address, live_migration_inbound_addr). */
  migrationAddressConfigured: boolean;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);

/**
 * The destination's own say on the stream the source planned: it takes clear
 * text only when its own permit_cleartext allows it (the source's option does not
 * speak for it), and lets its QEMU listen on every interface only when an
 * operator chose that address. Tunnels always encrypt and reach QEMU over a
 * private unix socket, so they pass.
 */
export function checkIncomingStream(
  stream: { transport: 'native' | 'tunnelled'; tls: boolean },
  policy: IncomingStreamPolicy,
): PreflightResult {
  const check = 'transport';
  if (stream.transport === 'tunnelled')
    return { check, ok: true, message: `${policy.host} takes the stream through its TLS tunnel` };
  if (!stream.tls && !policy.permitCleartext) {
    return {
      check,
      ok: false,
      message: `${policy.host} does not take guest memory in clear text (its [vmferry] permit_cleartext is off)`,
      hint: 'use native TLS or the tunnel; clear text needs permit_cleartext = true on both hosts',
    };
  }
  if (WILDCARDS.has(policy.migrationAddress) && !policy.migrationAddressConfigured) {
    return {
      check,
      ok: false,
      message: `${policy.host} has no migration address: its agent listens on ${policy.migrationAddress || 'every address'}, and its QEMU would listen on every interface`,
      hint: 'set [libvirt] live_migration_inbound_addr (or vmferry agent --migration-address) on the destination, or use the tunnel',
    };
  }
  return {
    check,
    ok: true,
    message: `${policy.host} takes the stream on ${policy.migrationAddress}${stream.tls ? ' with QEMU TLS' : ' in clear text (permitted)'}`,
  };
}

/** What the source tells the destination for its pre-flight checks (POST /v1/preflight). */
export interface PreflightRequest {
  spec: VmSpec;
  source: PreflightHost & { qemuVersion: string };
  /** The shared disks as the source sees them; absent: not checked (a prepare re-checking). */
  disks?: DiskIdentity[];
}

/** What the destination knows about itself for the checks. */
export interface PreflightDestination extends PreflightHost {
  /** The operator put it in maintenance mode: it takes no VM. */
  maintenance: boolean;
  qemuVersion: string;
  machines: readonly string[];
  cpuModels: readonly string[];
  capacity: HostCapacity;
  /** Shared disks looked up at the paths the source named. */
  disks: readonly DiskLookup[];
  bridgePresent: (bridge: string) => boolean;
}

/**
 * Every pre-flight check of one VM moving to one destination, all of them, in a
 * fixed order, so a refusal lists every reason at once. Pure.
 */
export function preflightChecks(
  request: PreflightRequest,
  destination: PreflightDestination,
): PreflightResult[] {
  const { spec, source } = request;
  const host = destination.name;
  const shared = request.disks ?? [];
  return [
    checkMaintenance(host, destination.maintenance),
    checkMemory(spec, host, destination.capacity),
    checkAccelerators(source, destination),
    checkQemuVersion(source, destination),
    checkMachine(spec.machine, host, destination.machines),
    checkCpuModel(spec.cpu, host, destination.cpuModels),
    checkHostCpu(spec.cpu, source, destination),
    ...checkSharedDisks(shared, destination.disks, host),
    ...checkBridges(
      spec.nics.map((n) => n.bridge),
      host,
      destination.bridgePresent,
    ),
  ];
}

/** All failed checks as one error (each with its hint), or undefined when every check passed. */
export function preflightError(results: readonly PreflightResult[]): PlanError | undefined {
  const failed = results.filter((r) => !r.ok);
  if (failed.length === 0) return undefined;
  const hints = failed.map((r) => r.hint).filter((h): h is string => h !== undefined);
  return new PlanError(
    `pre-flight check${failed.length > 1 ? 's' : ''} failed: ${failed.map((r) => `${r.check}: ${r.message}`).join('; ')}`,
    hints.length > 0 ? { hint: hints.join('; ') } : {},
  );
}
