import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { runFiles } from '../qemu/index.js';

/**
 * A piece of a VM's serial console. Offsets count bytes the guest wrote since
 * it booted, on whichever hosts it ran: they go on across migrations, so a
 * reader that asks for what came `after` its last `end` misses nothing and
 * sees nothing twice. `text` holds the bytes as latin1 (one char per byte).
 */
export interface ConsoleChunk {
  text: string;
  start: number;
  end: number;
}

/** What the source hands the destination at the switch-over: its console's last bytes. */
export type ConsoleTail = Omit<ConsoleChunk, 'start'>;

/** How much console a migration carries to the destination. */
export const CONSOLE_TAIL_BYTES = 64 * 1024;
/** The most one read returns. */
export const CONSOLE_READ_BYTES = 256 * 1024;

/** Where the console goes on after a migration: the bytes carried over, and the offset QEMU's log starts at. */
function historyFiles(runDir: string): { text: string; meta: string } {
  return { text: join(runDir, 'console-history.log'), meta: join(runDir, 'console.json') };
}

/** The offset at which this host's serial log begins (0 for a VM booted here). */
function serialStart(runDir: string): number {
  const { meta } = historyFiles(runDir);
  if (!existsSync(meta)) return 0;
  const parsed = JSON.parse(readFileSync(meta, 'utf8')) as { serialStart?: unknown };
  return typeof parsed.serialStart === 'number' ? parsed.serialStart : 0;
}

function readRange(file: string, from: number, to: number): string {
  if (to <= from || !existsSync(file)) return '';
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(to - from);
    const n = readSync(fd, buf, 0, buf.length, from);
    return buf.subarray(0, n).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

function fileSize(file: string): number {
  return existsSync(file) ? statSync(file).size : 0;
}

/** Keeps only the last `lines` lines of `text` (a last line without its newline counts). */
export function lastLines(text: string, lines: number): { text: string; cut: number } {
  let at = text.endsWith('\n') ? text.length - 1 : text.length;
  for (let i = 0; i < lines; i++) {
    const nl = text.lastIndexOf('\n', at - 1);
    if (nl < 0) return { text, cut: 0 };
    at = nl;
  }
  return { text: text.slice(at + 1), cut: at + 1 };
}

/**
 * Reads a VM's console from its run directory: the history carried from the
 * hosts it ran on before, then what QEMU wrote here. `after`: from that offset
 * on; `lines`: only the last lines; at most `maxBytes` (the newest).
 */
export function readConsole(
  runDir: string,
  options: { after?: number; lines?: number; maxBytes?: number } = {},
): ConsoleChunk {
  const files = historyFiles(runDir);
  const serialLog = runFiles(runDir).serialLog;
  const base = serialStart(runDir);
  const historySize = fileSize(files.text);
  const historyStart = base - historySize;
  const end = base + fileSize(serialLog);
  const maxBytes = options.maxBytes ?? CONSOLE_READ_BYTES;
  const start = Math.min(end, Math.max(options.after ?? 0, end - maxBytes, historyStart));
  let text =
    readRange(files.text, Math.max(0, start - historyStart), historySize) +
    readRange(serialLog, Math.max(0, start - base), end - base);
  let from = start;
  if (options.lines !== undefined) {
    const kept = lastLines(text, options.lines);
    text = kept.text;
    from += kept.cut;
  }
  return { text, start: from, end: from + text.length };
}

/** The last bytes of a VM's console, for the destination of a migration. */
export function consoleTail(runDir: string, maxBytes = CONSOLE_TAIL_BYTES): ConsoleTail {
  const { text, end } = readConsole(runDir, { maxBytes });
  return { text, end };
}

/**
 * On the destination, before its guest runs: the console so far, carried
 * from the source, so this host's console goes on from it.
 */
export function writeConsoleHistory(runDir: string, tail: ConsoleTail): void {
  const files = historyFiles(runDir);
  writeFileSync(files.text, Buffer.from(tail.text, 'latin1'));
  writeFileSync(files.meta, `${JSON.stringify({ serialStart: tail.end })}\n`);
}

/** Checks a console tail sent by a peer. */
export function validateConsoleTail(input: unknown): ConsoleTail {
  const t = input as { text?: unknown; end?: unknown } | null;
  if (
    typeof t !== 'object' ||
    t === null ||
    typeof t.text !== 'string' ||
    t.text.length > CONSOLE_TAIL_BYTES ||
    typeof t.end !== 'number' ||
    !Number.isSafeInteger(t.end) ||
    t.end < t.text.length
  ) {
    throw new UsageError(
      `consoleTail must be {text: at most ${CONSOLE_TAIL_BYTES} characters, end: an offset not below its length}`,
    );
  }
  // One char per byte: anything above U+00FF would not survive the trip back to bytes.
  for (let i = 0; i < t.text.length; i++) {
    if (t.text.charCodeAt(i) > 0xff) throw new UsageError('consoleTail.text must hold bytes as latin1');
  }
  return { text: t.text, end: t.end };
}
