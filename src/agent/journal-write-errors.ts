import type { Journal } from './journal.js';

/** The journal's methods that write; the others only read. */
export const JOURNAL_WRITES = [
  'upsertVm',
  'setVmState',
  'deleteVm',
  'createMigration',
  'setMigrationState',
  'addSample',
  'failInFlightMigrations',
  'prune',
] as const satisfies readonly (keyof Journal)[];

/**
 * The same journal, telling `onError` about every write that throws (the error
 * still reaches the caller): the agent counts them in its metrics.
 */
export function watchJournalWrites(journal: Journal, onError: (err: unknown) => void): Journal {
  const writes = new Set<PropertyKey>(JOURNAL_WRITES);
  return new Proxy(journal, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (!writes.has(property)) return method.bind(target);
      return (...args: unknown[]) => {
        try {
          return method.apply(target, args);
        } catch (err) {
          onError(err);
          throw err;
        }
      };
    },
  });
}
