import { join } from 'node:path';
import { packageRoot } from '../paths.js';
import { GUEST_MAX_MEM_MIB } from './layout.js';

/** Largest dirty or verify rate the guest accepts, in MiB/s. */
export const GUEST_MAX_RATE_MIBPS = 1_048_576;

/** What the guest workload does; becomes its kernel command line. */
export interface GuestWorkload {
  /** Memory the workload fills, rewrites and verifies, in MiB (the guest clamps it to the RAM it finds). */
  memMiB: number;
  /** Rewrite rate in MiB/s; 0 leaves memory idle and only verifies. */
  dirtyMiBps: number;
  /** Verify rate in MiB/s, or 'max' (the default) to verify with all the time left. */
  verifyMiBps?: number | 'max' | undefined;
}

/** The guest's defaults when the command line leaves a parameter out. */
export const GUEST_DEFAULT_WORKLOAD: Readonly<Required<GuestWorkload>> = {
  memMiB: 64,
  dirtyMiBps: 0,
  verifyMiBps: 'max',
};

/** The `-append` string for a workload, e.g. `mem=256 dirty=64`; throws RangeError on values the guest would refuse. */
export function guestAppend(workload: GuestWorkload): string {
  const { memMiB, dirtyMiBps, verifyMiBps = 'max' } = workload;
  if (!Number.isInteger(memMiB) || memMiB < 1 || memMiB > GUEST_MAX_MEM_MIB) {
    throw new RangeError(`memMiB must be an integer from 1 to ${GUEST_MAX_MEM_MIB}, got ${memMiB}`);
  }
  if (!Number.isInteger(dirtyMiBps) || dirtyMiBps < 0 || dirtyMiBps > GUEST_MAX_RATE_MIBPS) {
    throw new RangeError(
      `dirtyMiBps must be an integer from 0 to ${GUEST_MAX_RATE_MIBPS}, got ${dirtyMiBps}`,
    );
  }
  if (
    verifyMiBps !== 'max' &&
    (!Number.isInteger(verifyMiBps) || verifyMiBps < 1 || verifyMiBps > GUEST_MAX_RATE_MIBPS)
  ) {
    throw new RangeError(
      `verifyMiBps must be 'max' or an integer from 1 to ${GUEST_MAX_RATE_MIBPS}, got ${String(verifyMiBps)}`,
    );
  }
  const parts = [`mem=${memMiB}`, `dirty=${dirtyMiBps}`];
  if (verifyMiBps !== 'max') parts.push(`verify=${verifyMiBps}`);
  return parts.join(' ');
}

/** Where `make -C guest` (run by scripts/setup.mjs) puts the guest kernel. */
export function guestKernelPath(): string {
  return join(packageRoot(), 'guest', 'build', 'vmferry-guest.elf');
}
