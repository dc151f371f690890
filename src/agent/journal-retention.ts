import { describeError } from '../errors.js';
import type { Journal } from './journal.js';

export const RETENTION_SWEEP_MS = 24 * 3600 * 1000;

export interface JournalRetentionOptions {
  /** `[vmferry] journal_retention_days`; 0 keeps everything (no timer). */
  days: number;
  log: (line: string) => void;
  /** Injected for tests; the timer must not keep the process alive. */
  every?: (fn: () => void, ms: number) => { unref?: () => void };
  cancel?: (timer: unknown) => void;
}

/**
 * Prunes the journal now and then once a day; returns a function that stops the
 * daily sweep. A failed sweep is logged, never fatal: retention is housekeeping.
 */
export function keepJournalTrimmed(journal: Journal, options: JournalRetentionOptions): () => void {
  if (options.days === 0) return () => undefined;
  const sweep = (): void => {
    try {
      const { migrations, samples } = journal.prune(options.days);
      if (migrations > 0 || samples > 0)
        options.log(
          `journal: pruned ${migrations} migration(s) and ${samples} sample(s) older than ${options.days} day(s)`,
        );
    } catch (err) {
      options.log(`journal: pruning failed: ${describeError(err)}`);
    }
  };
  sweep();
  const every = options.every ?? ((fn, ms) => setInterval(fn, ms));
  const timer = every(sweep, RETENTION_SWEEP_MS);
  timer.unref?.();
  const cancel = options.cancel ?? ((t) => clearInterval(t as NodeJS.Timeout));
  return () => cancel(timer);
}
