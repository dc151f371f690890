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

const migrationOf = new WeakMap<object, string>();

/** The migration a failed journal write (or another error marked so) was about, if it was about one. */
export function migrationOfError(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? migrationOf.get(err) : undefined;
}

/** Marks an error as being about a migration (for the agent's policy on unexpected rejections). */
export function markMigrationError<E>(err: E, migrationId: string | undefined): E {
  if (migrationId !== undefined && typeof err === 'object' && err !== null) migrationOf.set(err, migrationId);
  return err;
}

/** The migration id among a write's arguments: createMigration's input, or the first argument. */
function migrationArgument(method: PropertyKey, args: unknown[]): string | undefined {
  const first = args[0];
  if (method === 'createMigration') {
    const id = (first as { id?: unknown } | null)?.id;
    return typeof id === 'string' ? id : undefined;
  }
  if (method === 'setMigrationState' || method === 'addSample')
    return typeof first === 'string' ? first : undefined;
  return undefined;
}

/**
 * The same journal, telling `onError` about every write that throws (the error
 * still reaches the caller, marked with the migration it was about, for
 * {@link migrationOfError}): the agent counts them in its metrics.
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
          markMigrationError(err, migrationArgument(property, args));
          onError(err);
          throw err;
        }
      };
    },
  });
}
