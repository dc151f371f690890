import type { GuestHeartbeatEvent } from './heartbeat-parser.js';

export type GuestHealthState = 'ok' | 'corrupt' | 'stalled';

export interface GuestHealth {
  state: GuestHealthState;
  /** One line that explains the verdict, for logs and test failures. */
  reason: string;
  /** Heartbeats at the end of the window in which seq and verified (and written, if required) kept advancing. */
  advancing: number;
  lastSeq: number | undefined;
  /** Set when state is 'corrupt': the first bad page the guest reported. */
  corruptPage: number | undefined;
}

export interface GuestHealthOptions {
  /** Advancing OK heartbeats needed for 'ok'; default 3. */
  minOk?: number | undefined;
  /** Only judge heartbeats with a seq above this one (e.g. the last seen before a migration). */
  afterSeq?: number | undefined;
  /** Also require the written count to advance (for a workload with a dirty rate). Default false. */
  requireWrites?: boolean | undefined;
}

/**
 * Judges the guest from the heartbeats observed, oldest first. 'corrupt' as
 * soon as any heartbeat in the window says so; 'ok' when the last `minOk`
 * heartbeats are OK and each one's seq and verified count are above the one
 * before; 'stalled' otherwise (too few heartbeats, counters that stopped, or
 * a seq that went back, as after a guest reboot). Call it once enough time
 * has passed for `minOk` heartbeats (about one a second) to have arrived.
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

  const bad = window.find((h) => h.status === 'corrupt');
  if (bad) {
    return {
      state: 'corrupt',
      reason: `guest reported page ${bad.corruptPage ?? '?'} corrupt at heartbeat seq=${bad.seq}`,
      advancing: 0,
      lastSeq,
      corruptPage: bad.corruptPage,
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
    };
  }

  let advancing = 1;
  let why = '';
  for (let i = window.length - 1; i > 0 && advancing < minOk; i--) {
    const cur = window[i];
    const prev = window[i - 1];
    if (!cur || !prev) break;
    if (cur.seq <= prev.seq) {
      why = `seq went from ${prev.seq} to ${cur.seq}`;
      break;
    }
    if (cur.verified <= prev.verified) {
      why = `verified stayed at ${prev.verified} from seq=${prev.seq} to seq=${cur.seq}`;
      break;
    }
    if (options.requireWrites === true && cur.written <= prev.written) {
      why = `written stayed at ${prev.written} from seq=${prev.seq} to seq=${cur.seq}`;
      break;
    }
    advancing++;
  }
  if (advancing >= minOk) {
    return {
      state: 'ok',
      reason: `${advancing} advancing OK heartbeats up to seq=${last.seq} (verified=${last.verified})`,
      advancing,
      lastSeq,
      corruptPage: undefined,
    };
  }
  const detail = why !== '' ? why : `only ${window.length} heartbeat(s)`;
  return {
    state: 'stalled',
    reason: `${advancing} advancing OK heartbeat(s), need ${minOk}: ${detail}`,
    advancing,
    lastSeq,
    corruptPage: undefined,
  };
}
