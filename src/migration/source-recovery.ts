import { QmpCommandError, describeError } from '../errors.js';
import type { QmpClient } from '../qemu/index.js';
import {
  POSTCOPY_STATUSES,
  SENDING_STATUSES,
  wentThroughPostcopy,
  type QueryMigrate,
} from './query-migrate.js';

export interface SourceRestore {
  /** running: the guest runs here; split: post-copy had started; gone/unknown: QEMU is dead or did not answer. */
  outcome: 'running' | 'split' | 'gone' | 'unknown';
  message: string;
}

/**
 * Puts a source back as it was after a failed or interrupted migration: cancels
 * a migration QEMU is still sending, then resumes the guest if the migration (or
 * a forced completion) paused it. Used by the migration driver on failure and by
 * the agent for migrations a previous agent process left unfinished.
 */
export async function restoreSourceGuest(qmp: QmpClient, postcopyStarted = false): Promise<SourceRestore> {
  if (!qmp.connected) return { outcome: 'gone', message: 'the source QEMU is gone' };
  const split: SourceRestore = {
    outcome: 'split',
    message:
      'post-copy had started: the guest state is split between the hosts; the source QEMU is kept paused for recovery',
  };
  if (postcopyStarted) return split;
  try {
    for (let i = 0; i < 100; i++) {
      const status = (await qmp.execute<{ status?: string }>('query-migrate')).status ?? 'none';
      if (POSTCOPY_STATUSES.includes(status)) return split;
      if (!SENDING_STATUSES.includes(status)) break;
      if (status !== 'cancelling') await qmp.execute('migrate_cancel');
      await new Promise((r) => setTimeout(r, 100));
    }
    const state = await qmp.execute<{ status: string; running: boolean }>('query-status');
    if (!state.running) {
      await qmp.execute('cont');
      return { outcome: 'running', message: `the source guest was ${state.status} and has been resumed` };
    }
    return { outcome: 'running', message: 'the source guest kept running' };
  } catch (err) {
    if (err instanceof QmpCommandError) {
      return { outcome: 'unknown', message: `could not restore the source guest: ${err.message}` };
    }
    return { outcome: 'unknown', message: `could not check the source guest: ${describeError(err)}` };
  }
}

/**
 * What to do with a migration the source journal says was before its hand-over
 * (preparing, migrating) when nothing drives it any more (the agent restarted, or
 * its task ended unexpectedly), from what the source QEMU says now (undefined: QEMU
 * is gone or does not answer). The journal may lag behind QEMU (a write waiting for
 * the disk, or a crash right after QEMU switched): QEMU decides.
 * - `finish-postcopy`: QEMU is in post-copy: the guest runs on the destination; finish it;
 * - `settle`: QEMU completed after a post-copy switch: the destination runs the guest;
 *   settle it with the destination like a hand-over in doubt;
 * - `call-off`: the destination never started the guest: resume here, tell it to drop its copy.
 */
export function interruptedSourceAction(
  info: QueryMigrate | undefined,
): 'finish-postcopy' | 'settle' | 'call-off' {
  if (info === undefined) return 'call-off';
  if (POSTCOPY_STATUSES.includes(info.status ?? '')) return 'finish-postcopy';
  if (wentThroughPostcopy(info)) return 'settle';
  return 'call-off';
}
