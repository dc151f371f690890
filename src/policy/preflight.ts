import { PlanError } from '../errors.js';

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
