/**
 * A drain: every VM of a host moved to other hosts, a few at a time, each VM tried
 * on a second destination when the first attempt fails. The job is plain data the
 * agent journals after every step, so it survives the CLI going away and the agent
 * restarting; these functions decide its next steps and never do I/O.
 */

/** How many destinations a VM is tried on before the drain reports it failed. */
export const DRAIN_MAX_ATTEMPTS = 2;

export interface DrainAttempt {
  /** The destination agent's address. */
  destination: string;
  /** Its host name, when it answered. */
  host?: string;
  migrationId?: string;
  outcome?: 'completed' | 'failed' | 'cancelled';
  error?: string;
  /** Cut off by this agent's restart: it neither counts as a try nor rules the host out. */
  interrupted?: boolean;
  seconds?: number;
  downtimeMs?: number;
  transport?: string;
}

export type DrainItemStatus = 'pending' | 'migrating' | 'completed' | 'failed';

export interface DrainItem {
  vm: string;
  memoryMiB: number;
  status: DrainItemStatus;
  attempts: DrainAttempt[];
  /** Why the VM could not be placed (each host passed over), or why it failed. */
  reasons: string[];
}

export type DrainState = 'running' | 'completed' | 'completed-with-failures';

export interface DrainJob {
  id: string;
  /** The host being drained. */
  host: string;
  /** The destinations to choose from (the agent's peers, or --to). */
  candidates: string[];
  /** At most this many of the drain's migrations at once. */
  parallel: number;
  state: DrainState;
  startedAt: number;
  finishedAt?: number;
  items: DrainItem[];
}

export function newDrainJob(input: {
  id: string;
  host: string;
  candidates: string[];
  parallel: number;
  vms: readonly { name: string; memoryMiB: number }[];
  now: number;
}): DrainJob {
  return {
    id: input.id,
    host: input.host,
    candidates: input.candidates,
    parallel: input.parallel,
    state: input.vms.length === 0 ? 'completed' : 'running',
    startedAt: input.now,
    ...(input.vms.length === 0 ? { finishedAt: input.now } : {}),
    items: input.vms.map((vm) => ({
      vm: vm.name,
      memoryMiB: vm.memoryMiB,
      status: 'pending',
      attempts: [],
      reasons: [],
    })),
  };
}

/** The VMs to place now: pending ones, largest first, as many as free slots allow. */
export function itemsToPlace(job: DrainJob): DrainItem[] {
  const migrating = job.items.filter((i) => i.status === 'migrating').length;
  const slots = Math.max(0, job.parallel - migrating);
  return job.items
    .filter((i) => i.status === 'pending')
    .sort((x, y) => y.memoryMiB - x.memoryMiB || x.vm.localeCompare(y.vm))
    .slice(0, slots);
}

/** Hosts a VM must not be sent to again: those where a real attempt failed. */
export function excludedFor(item: DrainItem): Set<string> {
  return new Set(
    item.attempts
      .filter((a) => a.outcome !== undefined && a.outcome !== 'completed' && a.interrupted !== true)
      .map((a) => a.destination),
  );
}

/** Attempts that count towards the limit: every one not cut off by a restart of this agent. */
function countedAttempts(item: DrainItem): number {
  return item.attempts.filter((a) => a.interrupted !== true).length;
}

/** A migration of the item was started towards `destination`. */
export function attemptStarted(item: DrainItem, attempt: DrainAttempt): DrainItem {
  return { ...item, status: 'migrating', attempts: [...item.attempts, attempt], reasons: [] };
}

/**
 * The item's latest attempt ended (or could not start): done when it completed;
 * otherwise pending again for another destination, or failed after
 * {@link DRAIN_MAX_ATTEMPTS} tries, with the reason kept.
 */
export function attemptEnded(
  item: DrainItem,
  end: Omit<DrainAttempt, 'destination'> & { destination?: string },
): DrainItem {
  const last = item.attempts.at(-1);
  const started =
    last !== undefined &&
    last.outcome === undefined &&
    (end.destination === undefined || end.destination === last.destination);
  const attempt: DrainAttempt = started
    ? { ...last, ...end, destination: last.destination }
    : { destination: end.destination ?? '?', ...end };
  const attempts = started ? [...item.attempts.slice(0, -1), attempt] : [...item.attempts, attempt];
  const next: DrainItem = { ...item, attempts };
  if (attempt.outcome === 'completed') return { ...next, status: 'completed', reasons: [] };
  if (countedAttempts(next) >= DRAIN_MAX_ATTEMPTS) {
    return {
      ...next,
      status: 'failed',
      reasons: [`${attempt.host ?? attempt.destination}: ${attempt.error ?? attempt.outcome ?? 'failed'}`],
    };
  }
  return { ...next, status: 'pending', reasons: [] };
}

/**
 * No host could take the item now. While other migrations of the drain run, room
 * may come free: it stays pending. With nothing in flight, nothing will change: it fails.
 */
export function unplaced(job: DrainJob, item: DrainItem, reasons: string[]): DrainItem {
  const inFlight = job.items.some((i) => i.status === 'migrating');
  if (inFlight) return { ...item, reasons };
  return {
    ...item,
    status: 'failed',
    reasons: reasons.length > 0 ? reasons : ['no destination to choose from'],
  };
}

/** The job with one item replaced. */
export function withItem(job: DrainJob, item: DrainItem): DrainJob {
  return { ...job, items: job.items.map((i) => (i.vm === item.vm ? item : i)) };
}

/** Running while any VM is pending or migrating; then completed, with failures or not. */
export function settleDrain(job: DrainJob, now: number): DrainJob {
  if (job.items.some((i) => i.status === 'pending' || i.status === 'migrating'))
    return { ...job, state: 'running' };
  if (job.state !== 'running') return job;
  const failed = job.items.some((i) => i.status === 'failed');
  return { ...job, state: failed ? 'completed-with-failures' : 'completed', finishedAt: now };
}

/** One line of progress for a terminal: "drain d1: 2/4 moved, 1 migrating, 1 waiting, 0 failed". */
export function drainProgress(job: DrainJob): string {
  const n = (s: DrainItemStatus): number => job.items.filter((i) => i.status === s).length;
  return `drain of ${job.host}: ${n('completed')}/${job.items.length} moved, ${n('migrating')} migrating, ${n('pending')} waiting, ${n('failed')} failed`;
}
