import { existsSync, readFileSync } from 'node:fs';
import { UsageError, describeError } from '../errors.js';
import {
  preflightChecks,
  type DiskIdentity,
  type DiskLookup,
  type HostCapacity,
  type PreflightRequest,
  type PreflightResult,
} from '../policy/index.js';
import { diskIdentity, validateVmSpec, type VmSpec } from '../qemu/index.js';
import type { HostSummary } from './api-client.js';
export type { PreflightAnswer } from './api-client.js';
import { hostCapacity, parseMeminfo, residentMiB } from './host-capacity.js';
import type { VmRegistry } from './vm-registry.js';

export interface HostFactsOptions {
  summary: () => HostSummary;
  registry: VmRegistry;
  /** nova's [DEFAULT] reserved_host_memory_mb. */
  reservedHostMiB: number;
  /** /proc/meminfo's text (a parameter for tests). */
  meminfo?: () => string;
}

/**
 * What this host can offer a VM, read when asked: memory left after what its VMs
 * (running or arriving) have not taken yet and the host's own reserve; whether its
 * bridges and shared disks are there. Runs the pre-flight checks as a destination.
 */
export class HostFacts {
  /** Memory of incoming VMs being prepared whose QEMU is not in the registry yet, MiB each. */
  private readonly reserved = new Set<{ memoryMiB: number }>();

  constructor(private readonly options: HostFactsOptions) {}

  /** Holds `memoryMiB` for a VM about to be started here; the returned function lets it go. */
  reserve(memoryMiB: number): () => void {
    const r = { memoryMiB };
    this.reserved.add(r);
    return () => void this.reserved.delete(r);
  }

  /** How many such reservations are held. */
  reservations(): number {
    return this.reserved.size;
  }

  get qemuVersion(): string {
    return this.options.summary().qemuVersion;
  }

  capacity(): HostCapacity {
    const meminfo = parseMeminfo((this.options.meminfo ?? (() => readFileSync('/proc/meminfo', 'utf8')))());
    const vms = this.options.registry.list().map((vm) => ({
      memoryMiB: vm.spec.memoryMiB,
      // A VM whose QEMU is gone takes nothing; one still arriving holds little yet: the rest is promised.
      residentMiB: vm.qemu?.alive === true ? residentMiB(vm.qemu.pid) : vm.spec.memoryMiB,
    }));
    return hostCapacity({
      meminfo,
      running: vms,
      incoming: [...this.reserved],
      reservedHostMiB: this.options.reservedHostMiB,
    });
  }

  /** Every pre-flight check for receiving `request.spec` here. */
  check(request: PreflightRequest): PreflightResult[] {
    const self = this.options.summary();
    const paths = (request.disks ?? []).map((d) => d.path);
    return preflightChecks(request, {
      ...self,
      maintenance: self.maintenance,
      capacity: this.capacity(),
      disks: paths.map(lookupDisk),
      bridgePresent,
    });
  }
}

/** A shared disk's identity on this host, or why it has none. */
function lookupDisk(path: string): DiskLookup {
  try {
    return diskIdentity(path);
  } catch (err) {
    return { path, missing: describeError(err) };
  }
}

/** A Linux bridge of this host (of the agent's network namespace). */
export function bridgePresent(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name) && existsSync(`/sys/class/net/${name}/bridge`);
}

/** The identities of a VM's shared disks, as this (source) host sees them. */
export function sharedDiskIdentities(spec: VmSpec): DiskIdentity[] {
  return spec.disks.filter((d) => d.storage === 'shared').map((d) => diskIdentity(d.path));
}

/** A pre-flight request from a peer, checked: the spec, the source's facts, the disk identities. */
export function validatePreflightRequest(body: unknown): PreflightRequest {
  if (typeof body !== 'object' || body === null)
    throw new UsageError('a pre-flight request must be a JSON object');
  const b = body as Record<string, unknown>;
  const spec = validateVmSpec(b.spec);
  const s = (typeof b.source === 'object' && b.source !== null ? b.source : {}) as Record<string, unknown>;
  if (typeof s.name !== 'string' || s.name === '')
    throw new UsageError('source.name must be the source host name');
  if (s.accelerator !== 'kvm' && s.accelerator !== 'tcg')
    throw new UsageError(`source.accelerator must be kvm or tcg, got ${JSON.stringify(s.accelerator)}`);
  if (typeof s.qemuVersion !== 'string' || !/^\d+(\.\d+){0,3}$/.test(s.qemuVersion))
    throw new UsageError(
      `source.qemuVersion must be a version like 7.2.22, got ${JSON.stringify(s.qemuVersion)}`,
    );
  const sharedPaths = new Set(spec.disks.filter((d) => d.storage === 'shared').map((d) => d.path));
  const disks: DiskIdentity[] = [];
  if (b.disks !== undefined) {
    if (!Array.isArray(b.disks)) throw new UsageError('disks must be a list');
    for (const [i, raw] of (b.disks as unknown[]).entries()) {
      const d = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
      // Only the spec's own shared disks are looked up: a peer cannot have other files fingerprinted.
      if (typeof d.path !== 'string' || !sharedPaths.has(d.path))
        throw new UsageError(
          `disks[${i}].path must be one of the spec's shared disks, got ${JSON.stringify(d.path)}`,
        );
      if (typeof d.sizeBytes !== 'number' || !Number.isSafeInteger(d.sizeBytes) || d.sizeBytes < 0)
        throw new UsageError(
          `disks[${i}].sizeBytes must be a byte count, got ${JSON.stringify(d.sizeBytes)}`,
        );
      if (typeof d.fingerprint !== 'string' || !/^[0-9a-f]{64}$/.test(d.fingerprint))
        throw new UsageError(`disks[${i}].fingerprint must be a sha256 in hex`);
      disks.push({ path: d.path, sizeBytes: d.sizeBytes, fingerprint: d.fingerprint });
    }
  }
  return {
    spec,
    source: {
      name: s.name,
      accelerator: s.accelerator,
      qemuVersion: s.qemuVersion,
      ...(typeof s.hostCpu === 'object' && s.hostCpu !== null
        ? { hostCpu: s.hostCpu as HostSummary['hostCpu'] }
        : {}),
    },
    disks,
  };
}
