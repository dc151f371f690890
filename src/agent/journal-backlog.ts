import { JournalError, describeError } from '../errors.js';
import type { LogFn } from '../log/index.js';
import type { Journal } from './journal.js';
import { JOURNAL_WRITES, markMigrationError, migrationOfError } from './journal-write-errors.js';

/** SQLite result codes and errno values that say the disk, not the write, is the problem. */
const DISK_CODES =
  /^(SQLITE_(FULL|IOERR|BUSY|LOCKED|READONLY|CANTOPEN|PROTOCOL)\w*|ENOSPC|EDQUOT|EIO|EROFS)$/;

/** Whether a failed journal write may succeed later, unchanged (a full or failing disk). */
export function isDiskError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && DISK_CODES.test(code);
}

interface Waiting {
  what: string;
  write: (journal: Journal) => void;
}

export interface JournalBacklogOptions {
  log: LogFn;
  /** How often waiting writes are tried again, ms (default 1000). */
  retryMs?: number;
  /** Injected for tests; the timer must not keep the process alive. */
  every?: (fn: () => void, ms: number) => { unref?: () => void };
  cancel?: (timer: unknown) => void;
}

/**
 * Journal writes that must not stop what they record. A migration in post-copy or
 * in its hand-over goes on when the journal cannot be written (a full disk): its
 * writes wait here, in order, and are tried again every second until the disk
 * takes them. Every other write goes through {@link journal}, which first writes
 * whatever waits (so nothing is overtaken) and throws when it cannot: its caller
 * fails cleanly instead.
 */
export class JournalBacklog {
  /** The journal for writes that must be on disk before the caller goes on. */
  readonly journal: Journal;
  private readonly raw: Journal;
  private readonly options: JournalBacklogOptions;
  private readonly waiting: Waiting[] = [];
  private timer: unknown;
  /** The disk refused a write and nothing has been written since. */
  private stuck = false;

  constructor(journal: Journal, options: JournalBacklogOptions) {
    this.raw = journal;
    this.options = options;
    const writes = new Set<PropertyKey>(JOURNAL_WRITES);
    this.journal = new Proxy(journal, {
      get: (target, property, receiver) => {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        const method = value as (...args: unknown[]) => unknown;
        if (!writes.has(property)) return method.bind(target);
        return (...args: unknown[]) => {
          this.requireEmpty(String(property));
          try {
            return method.apply(target, args);
          } catch (err) {
            throw isDiskError(err) ? this.diskError(String(property), err) : err;
          }
        };
      },
    });
  }

  /** Writes waiting for the disk. */
  get pending(): number {
    return this.waiting.length;
  }

  /**
   * Writes now or, when the disk refuses it (or earlier writes still wait), later
   * in order. Never throws: an error that is not the disk's is logged (it would
   * fail again the same way). Returns whether it was written now.
   */
  later(what: string, write: (journal: Journal) => void): boolean {
    this.waiting.push({ what, write });
    this.flush();
    const written = !this.waiting.some((w) => w.write === write);
    if (!written && this.waiting.length === 1)
      this.options.log(`journal: cannot write (${what}); keeping it and trying again every second`, {
        level: 'error',
      });
    return written;
  }

  /** Tries the waiting writes in order, stopping at the first the disk still refuses. */
  flush(): void {
    while (this.waiting.length > 0) {
      const next = this.waiting[0] as Waiting;
      try {
        next.write(this.raw);
      } catch (err) {
        if (isDiskError(err)) {
          this.stuck = true;
          this.startRetrying();
          return;
        }
        this.options.log(
          `journal: dropping a write that cannot succeed (${next.what}): ${describeError(err)}`,
          {
            level: 'error',
          },
        );
      }
      this.waiting.shift();
      if (this.waiting.length === 0 && this.stuck) {
        this.stuck = false;
        this.stopRetrying();
        this.options.log(`journal: writable again; the writes that waited are on disk (last: ${next.what})`);
      }
    }
  }

  /** Tries once more, then stops retrying; what still waits is lost (the restart recovery looks at QEMU). */
  close(): void {
    this.flush();
    this.stopRetrying();
    if (this.waiting.length > 0)
      this.options.log(
        `journal: ${this.waiting.length} write(s) never reached the disk: ${this.waiting.map((w) => w.what).join('; ')}`,
        { level: 'error' },
      );
  }

  private requireEmpty(method: string): void {
    if (this.waiting.length === 0) return;
    this.flush();
    if (this.waiting.length > 0)
      throw new JournalError(
        `the journal cannot take ${method} now: ${this.waiting.length} earlier write(s) wait for the disk (${this.waiting[0]?.what ?? ''})`,
        this.raw.path,
        { hint: "free space on the state directory's file system; the agent writes them as soon as it can" },
      );
  }

  /** A refused write, saying where and why, for the operator who reads it at the end of a failed migration. */
  private diskError(method: string, err: unknown): JournalError {
    const error = new JournalError(
      `the journal ${this.raw.path} cannot be written (${method}): ${describeError(err)} (${String((err as { code?: unknown }).code)})`,
      this.raw.path,
      { hint: "free space on the state directory's file system", cause: err },
    );
    return markMigrationError(error, migrationOfError(err));
  }

  private startRetrying(): void {
    if (this.timer !== undefined) return;
    const every = this.options.every ?? ((fn, ms) => setInterval(fn, ms));
    const timer = every(() => this.flush(), this.options.retryMs ?? 1000);
    timer.unref?.();
    this.timer = timer;
  }

  private stopRetrying(): void {
    if (this.timer === undefined) return;
    (this.options.cancel ?? ((t) => clearInterval(t as NodeJS.Timeout)))(this.timer);
    this.timer = undefined;
  }
}
