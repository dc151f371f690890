import { PlanError } from '../errors.js';
import { hostCpuMismatch, type HostCpu } from '../qemu/index.js';

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
