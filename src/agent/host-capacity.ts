import { readFileSync } from 'node:fs';
import type { HostCapacity } from '../policy/index.js';

/** MemTotal and MemAvailable from /proc/meminfo text, in MiB. */
export function parseMeminfo(text: string): { totalMiB: number; availableMiB: number } {
  const kib = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (m === null) throw new Error(`/proc/meminfo has no ${field} line`);
    return Number(m[1]);
  };
  return { totalMiB: kib('MemTotal') / 1024, availableMiB: kib('MemAvailable') / 1024 };
}

/**
 * What one more VM may have on this host. Pure. MemAvailable already counts the
 * memory running VMs touched; what they have not touched yet, the whole memory of
 * incoming migrations and the host's own reserve are promised and taken off.
 */
export function hostCapacity(input: {
  meminfo: { totalMiB: number; availableMiB: number };
  running: readonly { memoryMiB: number; residentMiB: number }[];
  incoming: readonly { memoryMiB: number }[];
  reservedHostMiB: number;
}): HostCapacity {
  const untouched = input.running.reduce((sum, vm) => sum + Math.max(0, vm.memoryMiB - vm.residentMiB), 0);
  const incoming = input.incoming.reduce((sum, m) => sum + m.memoryMiB, 0);
  const reservedMiB = Math.round(untouched + incoming + input.reservedHostMiB);
  const availableMiB = Math.round(input.meminfo.availableMiB);
  return {
    totalMiB: Math.round(input.meminfo.totalMiB),
    availableMiB,
    reservedMiB,
    freeForVmsMiB: Math.max(0, availableMiB - reservedMiB),
  };
}

/** Resident memory of a process in MiB (VmRSS), 0 when it is gone. */
export function residentMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) / 1024;
  } catch {
    return 0;
  }
}
