import type { GuestDiskStatus, GuestHeartbeatEvent } from './heartbeat-parser.js';

export type GuestHealthState = 'ok' | 'corrupt' | 'stalled';

export interface GuestHealth {
  state: GuestHealthState;
  /** One line that explains the verdict, for logs and test failures. */
  reason: string;
  /** Heartbeats at the end of the window in which seq and verified (and written, if required) kept advancing. */
  advancing: number;
  lastSeq: number | undefined;
  /** Set when state is 'corrupt' because of memory: the first bad page the guest reported. */
  corruptPage: number | undefined;
  /** Set when state is 'corrupt' because of the disk (Linux guest): the first bad block. */
  corruptBlock: number | undefined;
  /** What the newest heartbeat judged says of each part (Linux guest); undefined for the freestanding guest. */
  parts: GuestParts | undefined;
}

/** The Linux guest's per-part status, as its heartbeat reports it. */
export interface GuestParts {
  mem: 'ok' | 'corrupt';
  /** Absent when the guest checks no disk. */
  disk?: GuestDiskStatus['status'];
  /** Complete passes of the disk check over every block so far; absent when the guest checks no disk or does not say. */
  diskPasses?: number;
  /** Absent when the guest pings nobody. */
  net?: 'ok' | 'down';
}

export interface GuestHealthOptions {
  /** Advancing OK heartbeats needed for 'ok'; default 3. */
  minOk?: number | undefined;
  /** Only judge heartbeats with a seq above this one (e.g. the last seen before a migration). */
  afterSeq?: number | undefined;
  /** Also require the written count (memory pages) to advance (for a workload with a dirty rate). Default false. */
  requireWrites?: boolean | undefined;
}

function partsOf(h: GuestHeartbeatEvent | undefined): GuestParts | undefined {
  if (h?.mem === undefined) return undefined;
  const parts: GuestParts = { mem: h.mem };
  if (h.disk) parts.disk = h.disk.status;
  if (h.disk?.passes !== undefined) parts.diskPasses = h.disk.passes;
  if (h.net) parts.net = h.net;
  return parts;
}

/** Why a heartbeat that is not corrupt still is not a healthy one (Linux guest's disk or network). */
function unwell(h: GuestHeartbeatEvent): string | undefined {
  if (h.disk?.status === 'error') return `disk ERROR (an I/O error) at seq=${h.seq}`;
  if (h.net === 'down') return `net DOWN (no ping reply) at seq=${h.seq}`;
  return undefined;
}

/**
 * How many heartbeats, counting back from the newest, are OK and each ahead of the
 * one before (seq and verified counts, writes when required), up to `minOk`; and
 * why the count stopped short, if it did.
 */
function countAdvancing(
  window: readonly GuestHeartbeatEvent[],
  minOk: number,
  requireWrites: boolean,
): { advancing: number; why: string } {
  const last = window.at(-1);
  let why = (last && unwell(last)) ?? '';
  let advancing = why === '' ? 1 : 0;
  for (let i = window.length - 1; i > 0 && advancing < minOk && why === ''; i--) {
    const cur = window[i];
    const prev = window[i - 1];
    if (!cur || !prev) break;
    why = unwell(prev) ?? standingStill(prev, cur, requireWrites) ?? '';
    if (why !== '') break;
    advancing++;
  }
  return { advancing, why };
}

/** Why `cur` is not ahead of `prev`, or undefined when it is. */
function standingStill(
  prev: GuestHeartbeatEvent,
  cur: GuestHeartbeatEvent,
  requireWrites: boolean,
): string | undefined {
  const span = `from seq=${prev.seq} to seq=${cur.seq}`;
  if (cur.seq <= prev.seq) return `seq went from ${prev.seq} to ${cur.seq}`;
  if (cur.verified <= prev.verified) return `verified stayed at ${prev.verified} ${span}`;
  if (requireWrites && cur.written <= prev.written) return `written stayed at ${prev.written} ${span}`;
  if (cur.disk && prev.disk && cur.disk.verified <= prev.disk.verified)
    return `disk_verified stayed at ${prev.disk.verified} ${span}`;
  return undefined;
}

/**
 * Judges the guest from the heartbeats observed, oldest first. 'corrupt' as
 * soon as any heartbeat in the window says so (memory or disk data wrong);
 * 'ok' when the last `minOk` heartbeats are OK (and, from the Linux guest,
 * report disk and net OK where they report them) and each one's seq and
 * verified counts (pages, and disk blocks) are above the one before;
 * 'stalled' otherwise (too few heartbeats, counters that stopped, a seq that
 * went back as after a guest reboot, a disk I/O error, the network down).
 * Call it once enough time has passed for `minOk` heartbeats (about one a
 * second) to have arrived.
 */
export function assessGuestHealth(
  heartbeats: readonly GuestHeartbeatEvent[],
  options: GuestHealthOptions = {},
): GuestHealth {
  const minOk = options.minOk ?? 3;
  if (!Number.isInteger(minOk) || minOk < 1) {
    throw new RangeError(`minOk must be a positive integer, got ${minOk}`);
  }
  const afterSeq = options.afterSeq;
  const window = afterSeq === undefined ? heartbeats : heartbeats.filter((h) => h.seq > afterSeq);
  const last = window.at(-1);
  const lastSeq = last?.seq;

  const parts = partsOf(last);

  const bad = window.find((h) => h.status === 'corrupt');
  if (bad) {
    const block = bad.disk?.corruptBlock;
    const found: string[] = [];
    if (bad.corruptPage !== undefined) found.push(`page ${bad.corruptPage}`);
    if (block !== undefined) found.push(`disk block ${block}`);
    const what = found.length > 0 ? found.join(' and ') : 'page ?';
    return {
      state: 'corrupt',
      reason: `guest reported ${what} corrupt at heartbeat seq=${bad.seq}`,
      advancing: 0,
      lastSeq,
      corruptPage: bad.corruptPage,
      corruptBlock: block,
      parts: partsOf(bad),
    };
  }
  if (!last) {
    const since = afterSeq === undefined ? '' : ` after seq=${afterSeq}`;
    return {
      state: 'stalled',
      reason: `no heartbeat${since}`,
      advancing: 0,
      lastSeq,
      corruptPage: undefined,
      corruptBlock: undefined,
      parts,
    };
  }

  const { advancing, why } = countAdvancing(window, minOk, options.requireWrites === true);
  if (advancing >= minOk) {
    const more = [
      ...(last.disk ? [`disk verified=${last.disk.verified}`] : []),
      ...(last.net ? ['net OK'] : []),
    ];
    return {
      state: 'ok',
      reason: `${advancing} advancing OK heartbeats up to seq=${last.seq} (verified=${last.verified}${more.map((m) => `, ${m}`).join('')})`,
      advancing,
      lastSeq,
      corruptPage: undefined,
      corruptBlock: undefined,
      parts,
    };
  }
  const detail = why !== '' ? why : `only ${window.length} heartbeat(s)`;
  return {
    state: 'stalled',
    reason: `${advancing} advancing OK heartbeat(s), need ${minOk}: ${detail}`,
    advancing,
    lastSeq,
    corruptPage: undefined,
    corruptBlock: undefined,
    parts,
  };
}
