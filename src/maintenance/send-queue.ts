/** A migration waiting for its turn on the source. */
export interface QueuedItem {
  id: string;
  vm: string;
  /** The destination asked us to wait (429): not before this time (ms). */
  notBefore?: number;
  /** How many times the destination said it was busy. */
  busyRetries?: number;
}

/** How long to wait after the destination's n-th 429: 2, 4, 8, 16, then 30 s. */
export function busyRetryDelayMs(retries: number): number {
  return Math.min(30_000, 2000 * 2 ** Math.max(0, retries - 1));
}

/**
 * The source's queue of migrations (nova's max_concurrent_live_migrations): first in,
 * first out, at most `limit` running at once (0: no limit). A migration whose
 * destination was busy keeps its place but is passed over until its time comes.
 * Pure: the caller says how many run and what time it is.
 */
export class SendQueue<T extends QueuedItem> {
  private readonly items: T[] = [];

  get length(): number {
    return this.items.length;
  }

  /** Appends at the end (a new migration) or, with `front`, puts it back where it was (a busy retry). */
  add(item: T, options: { front?: boolean } = {}): void {
    if (this.items.some((i) => i.id === item.id)) return;
    if (options.front === true) this.items.unshift(item);
    else this.items.push(item);
  }

  remove(id: string): T | undefined {
    const at = this.items.findIndex((i) => i.id === id);
    return at < 0 ? undefined : this.items.splice(at, 1)[0];
  }

  /** 1-based place in the queue, undefined when not queued. */
  position(id: string): number | undefined {
    const at = this.items.findIndex((i) => i.id === id);
    return at < 0 ? undefined : at + 1;
  }

  has(id: string): boolean {
    return this.position(id) !== undefined;
  }

  list(): readonly T[] {
    return this.items;
  }

  /** Takes the migrations that may start now, in order, given `running` and the limit. */
  takeReady(running: number, limit: number, now: number): T[] {
    const ready: T[] = [];
    let slots = limit === 0 ? Number.POSITIVE_INFINITY : limit - running;
    for (const item of [...this.items]) {
      if (slots <= 0) break;
      if (item.notBefore !== undefined && item.notBefore > now) continue;
      this.remove(item.id);
      ready.push(item);
      slots -= 1;
    }
    return ready;
  }

  /** When the next deferred item becomes ready, if any is waiting only for its time. */
  nextWakeUp(now: number): number | undefined {
    const times = this.items.map((i) => i.notBefore ?? now).filter((t) => t > now);
    return times.length === 0 ? undefined : Math.min(...times);
  }
}
