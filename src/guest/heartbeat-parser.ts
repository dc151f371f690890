/** `vmferry-guest ready ...`: the workload is filled and the heartbeat starts. */
export interface GuestReadyEvent {
  kind: 'ready';
  memMiB: number;
  dirtyMiBps: number;
  /** Physical address of workload page 0. */
  base: number;
  pages: number;
}

/** `vmferry-hb ...`: printed about once a second; counters survive migration. */
export interface GuestHeartbeatEvent {
  kind: 'heartbeat';
  seq: number;
  /** Pages rewritten since the guest was ready (the initial fill not counted). */
  written: number;
  /** Pages verified since the guest was ready. */
  verified: number;
  status: 'ok' | 'corrupt';
  /** The first page that failed verification; set when status is 'corrupt'. */
  corruptPage?: number;
}

/**
 * Any other `vmferry-guest <topic> ...` line: boot, filling, warning, error,
 * mismatch (details of a bad page), behind (dirty rate not met), fault.
 */
export interface GuestMessageEvent {
  kind: 'message';
  topic: string;
  /** The line from `vmferry-guest` on, without the line ending. */
  text: string;
}

export type GuestEvent = GuestReadyEvent | GuestHeartbeatEvent | GuestMessageEvent;

const HEARTBEAT_RE =
  /vmferry-hb seq=(\d+) written=(\d+) verified=(\d+) status=(?:(OK)|CORRUPT page=(\d+))(?=\s|$)/;
const READY_RE = /vmferry-guest ready mem=(\d+) dirty=(\d+) base=0x([0-9a-fA-F]+) pages=(\d+)(?=\s|$)/;
const MESSAGE_RE = /vmferry-guest ([a-z]+):?(?=\s|$).*$/;

function integers(texts: readonly (string | undefined)[], radix = 10): number[] | undefined {
  const out: number[] = [];
  for (const t of texts) {
    const n = t === undefined ? NaN : parseInt(t, radix);
    if (!Number.isSafeInteger(n)) return undefined;
    out.push(n);
  }
  return out;
}

/**
 * One line of guest serial output as an event, or undefined for anything
 * else. The marker may follow noise on the same line (a torn earlier line,
 * firmware output); a line cut short does not match.
 */
export function parseGuestLine(line: string): GuestEvent | undefined {
  const hb = HEARTBEAT_RE.exec(line);
  if (hb) {
    const ok = hb[4] !== undefined;
    const n = integers(ok ? [hb[1], hb[2], hb[3]] : [hb[1], hb[2], hb[3], hb[5]]);
    if (!n) return undefined;
    const [seq = 0, written = 0, verified = 0, corruptPage] = n;
    return ok
      ? { kind: 'heartbeat', seq, written, verified, status: 'ok' }
      : { kind: 'heartbeat', seq, written, verified, status: 'corrupt', corruptPage };
  }
  const ready = READY_RE.exec(line);
  if (ready) {
    const dec = integers([ready[1], ready[2], ready[4]]);
    const hex = integers([ready[3]], 16);
    if (!dec || !hex) return undefined;
    const [memMiB = 0, dirtyMiBps = 0, pages = 0] = dec;
    return { kind: 'ready', memMiB, dirtyMiBps, base: hex[0] ?? 0, pages };
  }
  const msg = MESSAGE_RE.exec(line);
  if (msg && msg[1] !== 'ready') {
    return { kind: 'message', topic: msg[1] ?? '', text: msg[0].trimEnd() };
  }
  return undefined;
}

/** Longest line kept; longer runs without a newline are noise and are dropped. */
const MAX_LINE = 4096;

/**
 * Incremental parser of the guest's serial stream: feed it chunks as they
 * arrive (any split, `\n` or `\r\n`), get the events of the lines completed.
 * A last line without its newline is never parsed: the guest ends every line,
 * so it was cut (QEMU stopped mid-line) and its numbers may be truncated.
 * Pure: no I/O, no clock.
 */
export class GuestSerialParser {
  private pending = '';
  private discarding = false;
  /** Complete lines that were not guest output (firmware, noise). */
  ignoredLines = 0;

  push(chunk: string | Uint8Array): GuestEvent[] {
    // latin1 maps each byte to one char, so a chunk split inside a byte
    // sequence cannot garble the ASCII lines the guest prints.
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1');
    const events: GuestEvent[] = [];
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      const piece = text.slice(start, nl);
      start = nl + 1;
      if (this.discarding) {
        this.discarding = false;
        this.pending = '';
        this.ignoredLines++;
        continue;
      }
      this.take(this.pending + piece, events);
      this.pending = '';
    }
    if (!this.discarding) {
      this.pending += text.slice(start);
      if (this.pending.length > MAX_LINE) {
        this.pending = '';
        this.discarding = true;
      }
    }
    return events;
  }

  private take(line: string, events: GuestEvent[]): void {
    const event = parseGuestLine(line.endsWith('\r') ? line.slice(0, -1) : line);
    if (event) events.push(event);
    else if (line.trim() !== '') this.ignoredLines++;
  }
}
