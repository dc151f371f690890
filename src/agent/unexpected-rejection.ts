import { describeError } from '../errors.js';
import { isTerminalMigrationState, type MigrationState } from '../migration/index.js';
import type { LogFn } from '../log/index.js';
import { migrationOfError } from './journal-write-errors.js';

export interface RejectionPolicyDeps {
  log: LogFn;
  /** Counts it (vmferry_unexpected_rejections_total). */
  count: () => void;
  /** The migration's state in the journal now; undefined when it has no record. */
  migrationState: (id: string) => MigrationState | undefined;
  /** Takes a migration up as after a restart (Agent.recoverMigration). */
  takeUp: (id: string, reason: string) => void;
  /** Runs `fn` later, off this tick (the task that failed may still be unwinding). */
  later: (fn: () => void) => void;
}

/**
 * The agent's policy for a promise rejection nothing handled (a bug: every known
 * failure is handled where it happens): log it with its stack, count it, keep
 * serving (other VMs and migrations are fine), and when it concerns a migration
 * that has not ended, take that migration up as after a restart. Ending the
 * process instead would stop every migration on the host to recover one.
 */
export function unexpectedRejection(reason: unknown, deps: RejectionPolicyDeps): void {
  deps.count();
  const id = migrationOfError(reason);
  const stack = reason instanceof Error ? reason.stack : undefined;
  deps.log(`unexpected rejection (a bug; the agent keeps serving): ${stack ?? describeError(reason)}`, {
    level: 'error',
    ...(id !== undefined ? { migration: id } : {}),
  });
  if (id === undefined) return;
  deps.later(() => {
    const state = deps.migrationState(id);
    if (state === undefined || isTerminalMigrationState(state)) return;
    deps.takeUp(id, `its task ended unexpectedly: ${describeError(reason)}`);
  });
}
