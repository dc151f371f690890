/** `vmferry-guest ready ...`: the workload is filled and the heartbeat starts. */
export interface GuestReadyEvent {
  kind: 'ready';
  memMiB: number;
  dirtyMiBps: number;
  /** Physical address of workload page 0. */
  base: number;
  pages: number;
}

/** The Linux guest's disk check, from `disk=... disk_written=.. disk_verified=..`. */
export interface GuestDiskStatus {
  /** 'corrupt': a block read back differs from what was written; 'error': the device failed a read or write. Both stay. */
  status: 'ok' | 'corrupt' | 'error';
  /** Blocks rewritten since the workload started (the initial fill not counted). */
  written: number;
  /** Blocks read back and checked since the workload started. */
  verified: number;
  /** Complete passes over every block of the checked region (`disk_passes`); absent from older guests. */
  passes?: number;
  /** The first block that failed verification; set when status is 'corrupt'. */
  corruptBlock?: number;
}

/** `vmferry-hb ...`: printed about once a second; counters survive migration. */
export interface GuestHeartbeatEvent {
  kind: 'heartbeat';
  seq: number;
  /** Pages rewritten since the guest was ready (the initial fill not counted). */
  written: number;
  /** Pages verified since the guest was ready. */
  verified: number;
  /** 'corrupt' when memory or (Linux guest) disk data was found wrong. */
  status: 'ok' | 'corrupt';
  /** The first page that failed verification; set when memory is corrupt. */
  corruptPage?: number;
  /** The Linux guest's per-part status (`mem=`); absent from the freestanding guest's heartbeats. */
  mem?: 'ok' | 'corrupt';
  /** The Linux guest's disk check; absent when it checks no disk. */
  disk?: GuestDiskStatus;
  /** The Linux guest's ping of its peer: 'down' when no reply came in the last 3 s; absent when it pings nobody. */
  net?: 'ok' | 'down';
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
// The Linux guest adds `mem=` and more `key=value` fields after the status, up to the end of the line.
const EXTENDED_RE =
  /vmferry-hb seq=(\d+) written=(\d+) verified=(\d+) status=(OK|CORRUPT)((?: [a-z_]+=[A-Za-z0-9]+)*)\s*$/;
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
  const ext = EXTENDED_RE.exec(line);
  if (ext && / mem=/.test(ext[5] ?? '')) return extendedHeartbeat(ext);
  const hb = HEARTBEAT_RE.exec(line);
  // A Linux guest's heartbeat that did not read above must not pass for one without parts.
  if (hb && /\smem=/.test(line.slice(hb.index + hb[0].length))) return undefined;
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

const MEM_STATES = { OK: 'ok', CORRUPT: 'corrupt' } as const;
const DISK_STATES = { OK: 'ok', CORRUPT: 'corrupt', ERROR: 'error' } as const;
const NET_STATES = { OK: 'ok', DOWN: 'down' } as const;

function pick<T extends Record<string, string>>(table: T, value: string | undefined): T[keyof T] | undefined {
  return value !== undefined && Object.hasOwn(table, value) ? table[value as keyof T] : undefined;
}

/**
 * `status=OK|CORRUPT` followed by `mem=OK|CORRUPT` (with `page=N` when
 * corrupt), optionally `disk=OK|CORRUPT|ERROR` (with `block=N` when corrupt)
 * `disk_written=N disk_verified=N` (and `disk_passes=N`), and `net=OK|DOWN`. Fields may come in any
 * order; unknown ones are skipped. A line whose fields contradict each other
 * (status=OK with mem=CORRUPT, a field twice, a number missing) is not read.
 */
function extendedHeartbeat(m: RegExpExecArray): GuestHeartbeatEvent | undefined {
  const fields = new Map<string, string>();
  for (const pair of (m[5] ?? '').trim().split(' ')) {
    const [key = '', value = ''] = pair.split('=');
    if (fields.has(key)) return undefined;
    fields.set(key, value);
  }
  const base = integers([m[1], m[2], m[3]]);
  if (!base) return undefined;
  const [seq = 0, written = 0, verified = 0] = base;
  const number = (key: string): number | undefined => {
    const v = fields.get(key);
    return v !== undefined && /^\d+$/.test(v) ? integers([v])?.[0] : undefined;
  };

  const event: GuestHeartbeatEvent = { kind: 'heartbeat', seq, written, verified, status: 'ok' };
  const mem = pick(MEM_STATES, fields.get('mem'));
  if (mem === undefined) return undefined;
  event.mem = mem;
  if (mem === 'corrupt') {
    event.corruptPage = number('page');
    if (event.corruptPage === undefined) return undefined;
  }
  if (fields.has('disk')) {
    const status = pick(DISK_STATES, fields.get('disk'));
    const dw = number('disk_written');
    const dv = number('disk_verified');
    if (status === undefined || dw === undefined || dv === undefined) return undefined;
    const disk: GuestDiskStatus = { status, written: dw, verified: dv };
    if (fields.has('disk_passes')) {
      disk.passes = number('disk_passes');
      if (disk.passes === undefined) return undefined;
    }
    if (status === 'corrupt') {
      disk.corruptBlock = number('block');
      if (disk.corruptBlock === undefined) return undefined;
    }
    event.disk = disk;
  }
  if (fields.has('net')) {
    const net = pick(NET_STATES, fields.get('net'));
    if (net === undefined) return undefined;
    event.net = net;
  }
  const corrupt = mem === 'corrupt' || event.disk?.status === 'corrupt';
  if (corrupt !== (m[4] === 'CORRUPT')) return undefined;
  if (corrupt) event.status = 'corrupt';
  return event;
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
