import { describeError } from '../errors.js';
import { isTerminalMigrationState, type MigrationRecorder, type MigrationState } from '../migration/index.js';
import type { LogFn } from '../log/index.js';
import type { Journal } from './journal.js';
import type { JournalBacklog } from './journal-backlog.js';

/**
 * Whether a source migration's move from `reached` (the furthest state it was in)
 * to `next` must be on disk before the driver goes on (`now`: if the journal
 * cannot take it, the migration fails cleanly, the guest running on the source),
 * or may wait for the disk (`later`). Once QEMU switched to post-copy or the
 * hand-over is journaled, the guest may run on the destination: nothing is
 * called off for want of a journal write, and a restart settles it from what the
 * journal holds then. The first `completing` is the exception that makes that
 * safe: a restart that finds it settles the hand-over with the destination
 * instead of resuming the source.
 */
export function whenToJournal(reached: MigrationState, next: MigrationState): 'now' | 'later' {
  if (isTerminalMigrationState(next) || next === 'postcopy') return 'later';
  if (reached === 'postcopy' || reached === 'completing') return 'later';
  return 'now';
}

/**
 * The journal as a source migration's driver records into it: state changes by
 * {@link whenToJournal}; samples only when the journal takes them (a progress
 * sample is not worth failing or queueing for).
 */
export function journalRecorder(o: {
  id: string;
  journal: Journal;
  backlog: JournalBacklog;
  log: LogFn;
  /** The state the migration is in already (created in it, or found in the journal). */
  reached: MigrationState;
}): MigrationRecorder {
  let reached = o.reached;
  let samplesLost = 0;
  return {
    state(state, message) {
      const when = whenToJournal(reached, state);
      if (when === 'now') o.journal.setMigrationState(o.id, state, { message });
      else
        o.backlog.later(`migration ${o.id} ${state}: ${message}`, (j) =>
          j.setMigrationState(o.id, state, { message }),
        );
      reached = state;
    },
    sample(sample) {
      try {
        o.journal.addSample(o.id, sample);
      } catch (err) {
        if (samplesLost++ === 0)
          o.log(`migration ${o.id}: samples are not journaled for now: ${describeError(err)}`, {
            level: 'warn',
            migration: o.id,
          });
      }
    },
  };
}
