import type { Duplex } from 'node:stream';

export interface RelayCounters {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
}

export interface RelayResult extends RelayCounters {
  /** The first error of either side; undefined when both ended cleanly. */
  error: Error | undefined;
}

export interface RelayOptions {
  /** After one side ends, the pair is destroyed if it has not closed within this time. */
  lingerMs: number;
  /**
   * Coalesce the chunks read in one event-loop turn into one writev, per
   * direction. Worth it into plain sockets (one syscall instead of one per
   * 16 KiB TLS record); not into a TLS socket, which copies a writev into one
   * buffer before encrypting.
   */
  batchWrites: { aToB: boolean; bToA: boolean };
  /** Called for every chunk with its direction and size (byte counters of the caller). */
  onBytes?: (direction: 'aToB' | 'bToA', bytes: number) => void;
}

export interface Relay {
  readonly counters: Readonly<RelayCounters>;
  /** Settles when both sides have closed. */
  readonly closed: Promise<RelayResult>;
  /** Tears both sides down at once. */
  destroy(error?: Error): void;
}

type HalfOpenable = Duplex & { allowHalfOpen?: boolean };

/**
 * Pipes two duplex streams into each other, with back-pressure both ways.
 * An end (FIN) on one side ends the other after its queued data is written;
 * an error or abrupt close on either side destroys both, so a broken tunnel
 * connection also breaks the QEMU connection behind it instead of leaving
 * QEMU waiting. `lingerMs` bounds how long a half-closed pair may live.
 */
export function relay(a: Duplex, b: Duplex, options: RelayOptions): Relay {
  const counters: RelayCounters = { aToB: 0, bToA: 0 };
  let error: Error | undefined;
  let linger: NodeJS.Timeout | undefined;
  let closedSides = 0;
  let resolveClosed!: (r: RelayResult) => void;
  const closed = new Promise<RelayResult>((resolve) => (resolveClosed = resolve));

  const destroyBoth = (err?: Error): void => {
    if (err !== undefined && error === undefined) error = err;
    a.destroy();
    b.destroy();
  };

  const armLinger = (): void => {
    if (linger !== undefined) return;
    linger = setTimeout(() => destroyBoth(), options.lingerMs);
    linger.unref();
  };

  const pump = (from: Duplex, to: Duplex, direction: 'aToB' | 'bToA'): void => {
    let corked = false;
    const batch = options.batchWrites[direction];
    const uncork = (): void => {
      corked = false;
      to.uncork();
    };
    from.on('data', (chunk: Buffer) => {
      counters[direction] += chunk.length;
      options.onBytes?.(direction, chunk.length);
      if (to.destroyed || to.writableEnded) return;
      if (batch && !corked) {
        corked = true;
        to.cork();
        setImmediate(uncork);
      }
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => from.resume());
    from.on('end', () => {
      if (!to.destroyed && !to.writableEnded) to.end();
      armLinger();
    });
  };

  const onClosed = (side: Duplex): void => {
    const clean = side.readableEnded && side.writableFinished;
    const other = side === a ? b : a;
    if (!clean && !other.destroyed) other.destroy();
    closedSides += 1;
    if (closedSides === 2) {
      if (linger !== undefined) clearTimeout(linger);
      resolveClosed({ ...counters, error });
    }
  };

  for (const side of [a, b] as HalfOpenable[]) {
    side.allowHalfOpen = true;
    side.on('error', (err: Error) => destroyBoth(err));
    if (side.closed) queueMicrotask(() => onClosed(side));
    else side.once('close', () => onClosed(side));
  }
  pump(a, b, 'aToB');
  pump(b, a, 'bToA');
  // A stream paused by its previous owner (the HTTP parser, a handshake) does not start flowing from a new 'data' listener.
  a.resume();
  b.resume();

  return { counters, closed, destroy: destroyBoth };
}
