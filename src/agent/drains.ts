import { randomUUID } from 'node:crypto';
import { requirePeer } from './peers.js';
import { ConflictError, NotFoundError, UsageError, describeError } from '../errors.js';
import {
  attemptEnded,
  attemptStarted,
  chooseDestination,
  excludedFor,
  itemsToPlace,
  newDrainJob,
  placeAll,
  settleDrain,
  unplaced,
  withItem,
  type DrainItem,
  type DrainJob,
  type Placement,
  type PlacementCandidate,
} from '../maintenance/index.js';
import { isTerminalMigrationState, type MigrationReport } from '../migration/index.js';
import type { PreflightResult } from '../policy/index.js';
import type { AgentApi, DrainPlan, DrainRequest } from './api-client.js';

export type { DrainPlan, DrainRequest };
import type { Journal } from './journal.js';
import type { LogFn } from '../log/index.js';
import type { OutgoingMigrations } from './outgoing.js';
import type { VmRegistry } from './vm-registry.js';

export interface DrainsOptions {
  hostName: string;
  journal: Journal;
  registry: VmRegistry;
  outgoing: OutgoingMigrations;
  peerApi: (address: string) => AgentApi;
  /** The agent's configured peers. */
  peers: () => string[];
  setMaintenance: (on: boolean) => void;
  log: LogFn;
  /** Between steps of a running drain (a timer that does not keep the process alive). */
  sleep?: (ms: number) => Promise<void>;
  stepMs?: number;
}

/** The error a migration record ends with when this agent's restart cut it off. */
const RESTART_ERROR = /the agent restarted/;

/**
 * The drains of this host: each runs as a loop in the agent (not in the CLI that
 * asked for it), journaled after every step, resumed after a restart.
 */
export class Drains {
  private readonly running = new Set<string>();

  constructor(private readonly options: DrainsOptions) {}

  /** Starts a drain (maintenance on, then every VM moved), or with dryRun only plans it. */
  async start(request: DrainRequest): Promise<DrainJob | DrainPlan> {
    const candidates = this.candidatesFrom(request.to);
    const parallel = request.parallel ?? 1;
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64)
      throw new UsageError(
        `--parallel must be a whole number from 1 to 64, got ${JSON.stringify(request.parallel)}`,
      );
    if (request.dryRun === true) return this.plan(candidates);
    const active = this.options.journal.listDrains({ active: true })[0];
    if (active !== undefined)
      throw new ConflictError(`drain ${active.id} of this host is still running`, {
        hint: 'follow it with vmferry host drain --status',
      });
    this.options.setMaintenance(true);
    const vms = this.options.registry
      .list()
      .filter((vm) => vm.state === 'running')
      .map((vm) => ({ name: vm.spec.name, memoryMiB: vm.spec.memoryMiB }));
    const job = newDrainJob({
      id: randomUUID(),
      host: this.options.hostName,
      candidates,
      parallel,
      vms,
      now: Date.now(),
    });
    this.save(job);
    this.options.log(
      `drain ${job.id}: ${vms.length} VM(s) to move to ${candidates.join(', ')}, ${parallel} at a time`,
    );
    this.launch(job);
    return job;
  }

  /** After a restart: every drain that was running goes on. */
  resume(): void {
    for (const d of this.options.journal.listDrains({ active: true })) {
      const job = d.job as DrainJob;
      this.options.log(`drain ${job.id}: resumed after the restart`);
      this.launch(job);
    }
  }

  get(id: string): DrainJob {
    const d = this.options.journal.listDrains().find((x) => x.id === id);
    if (d === undefined) throw new NotFoundError(`no drain ${id} on this host`);
    return d.job as DrainJob;
  }

  list(): DrainJob[] {
    return this.options.journal.listDrains().map((d) => d.job as DrainJob);
  }

  private candidatesFrom(to: string[] | undefined): string[] {
    const peers = this.options.peers();
    const candidates = to !== undefined && to.length > 0 ? to : peers;
    for (const c of candidates) requirePeer(c, peers);
    if (candidates.length === 0) {
      throw new UsageError('no destinations to drain to', {
        hint: 'give --to https://HOST:PORT,... or set [vmferry] peers on this agent',
      });
    }
    return candidates;
  }

  private launch(job: DrainJob): void {
    if (this.running.has(job.id)) return;
    this.running.add(job.id);
    void this.run(job)
      .catch((err: unknown) =>
        this.options.log(`drain ${job.id} stopped: ${describeError(err)}`, { level: 'error' }),
      )
      .finally(() => this.running.delete(job.id));
  }

  private save(job: DrainJob): void {
    this.options.journal.saveDrain({ id: job.id, state: job.state, job, finished: job.state !== 'running' });
  }

  private async run(start: DrainJob): Promise<void> {
    const sleep = this.options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref()));
    let job = start;
    while (job.state === 'running') {
      job = this.settleMigrations(job);
      job = await this.placeSome(job);
      job = settleDrain(job, Date.now());
      this.save(job);
      if (job.state !== 'running') break;
      await sleep(this.options.stepMs ?? 1000);
    }
    this.options.log(
      `drain ${job.id} ${job.state}: ${job.items.map((i) => `${i.vm} ${i.status}`).join(', ')}`,
    );
  }

  /** Items whose migration ended: their outcome, duration, downtime and transport from the journal. */
  private settleMigrations(job: DrainJob): DrainJob {
    let next = job;
    for (const item of job.items) {
      const id = item.status === 'migrating' ? item.attempts.at(-1)?.migrationId : undefined;
      const m = id !== undefined ? this.options.journal.getMigration(id) : undefined;
      if (m === undefined || !isTerminalMigrationState(m.state)) continue;
      const report = m.report as MigrationReport | null;
      const error = m.error ?? undefined;
      next = withItem(
        next,
        attemptEnded(item, {
          outcome: m.state,
          ...(error !== undefined ? { error } : {}),
          ...(error !== undefined && RESTART_ERROR.test(error) ? { interrupted: true } : {}),
          ...(report !== null
            ? {
                seconds: report.totalSeconds,
                transport: report.transport,
                ...(report.downtimeMs !== undefined ? { downtimeMs: report.downtimeMs } : {}),
              }
            : {}),
        }),
      );
    }
    return next;
  }

  /** Places as many pending VMs as free slots allow and starts their migrations. */
  private async placeSome(job: DrainJob): Promise<DrainJob> {
    const toPlace = itemsToPlace(job);
    if (toPlace.length === 0) return job;
    const candidates = await this.candidates(job.candidates);
    let next = job;
    for (const item of toPlace) {
      const preflight = await this.preflights(item.vm, candidates);
      const choice = chooseDestination({
        vm: { name: item.vm, memoryMiB: item.memoryMiB },
        candidates,
        reservedMiB: this.reservations(next),
        exclude: excludedFor(item),
        preflight,
      });
      next = withItem(next, await this.startOne(next, item, choice));
    }
    return next;
  }

  private async startOne(job: DrainJob, item: DrainItem, choice: Placement): Promise<DrainItem> {
    const dest = choice.destination;
    if (dest === undefined) return unplaced(job, item, choice.reasons);
    if (!this.options.registry.has(item.vm) || this.options.registry.get(item.vm).state !== 'running') {
      return { ...item, status: 'failed', reasons: [`${item.vm} is no longer running here`] };
    }
    try {
      const { id } = await this.options.outgoing.start(item.vm, dest.address, {});
      this.options.log(
        `drain ${job.id}: ${item.vm} -> ${dest.name} (migration ${id}); ${choice.reasons[0] ?? ''}`,
        {
          vm: item.vm,
          migration: id,
        },
      );
      return attemptStarted(item, { destination: dest.address, host: dest.name, migrationId: id });
    } catch (err) {
      return attemptEnded(item, {
        destination: dest.address,
        host: dest.name,
        outcome: 'failed',
        error: describeError(err),
      });
    }
  }

  /** Memory this drain promised to each host whose incoming VM is not prepared there yet. */
  private reservations(job: DrainJob): Map<string, number> {
    const reserved = new Map<string, number>();
    for (const item of job.items) {
      const last = item.attempts.at(-1);
      if (item.status !== 'migrating' || last?.host === undefined || last.migrationId === undefined) continue;
      const state = this.options.journal.getMigration(last.migrationId)?.state;
      if (state !== 'queued' && state !== 'preparing') continue;
      reserved.set(last.host, (reserved.get(last.host) ?? 0) + item.memoryMiB);
    }
    return reserved;
  }

  /** Each destination as it answers now: free memory, maintenance, or why it does not answer. */
  private async candidates(addresses: readonly string[]): Promise<PlacementCandidate[]> {
    return Promise.all(
      addresses.map(async (address): Promise<PlacementCandidate> => {
        try {
          const h = await this.options.peerApi(address).host({ timeoutMs: 10_000 });
          return {
            name: h.name,
            address,
            maintenance: h.maintenance,
            freeMemoryMiB: h.capacity.freeForVmsMiB,
          };
        } catch (err) {
          return {
            name: address,
            address,
            unreachable: describeError(err),
            maintenance: false,
            freeMemoryMiB: 0,
          };
        }
      }),
    );
  }

  /** The pre-flight checks of moving `vm` to each reachable candidate, by candidate name. */
  private async preflights(
    vm: string,
    candidates: readonly PlacementCandidate[],
  ): Promise<Map<string, PreflightResult[]>> {
    const out = new Map<string, PreflightResult[]>();
    for (const c of candidates) {
      if (c.unreachable !== undefined || c.maintenance) continue;
      try {
        out.set(c.name, (await this.options.outgoing.checksFor(vm, c.address)).checks);
      } catch (err) {
        out.set(c.name, [{ check: 'pre-flight', ok: false, message: describeError(err) }]);
      }
    }
    return out;
  }

  /** The dry run: every VM placed in order, with the reasons, nothing started. */
  private async plan(candidateAddresses: string[]): Promise<DrainPlan> {
    const candidates = await this.candidates(candidateAddresses);
    const vms = this.options.registry.list().filter((vm) => vm.state === 'running');
    const preflight = new Map<string, Map<string, PreflightResult[]>>();
    for (const vm of vms) preflight.set(vm.spec.name, await this.preflights(vm.spec.name, candidates));
    const placements = placeAll(
      vms.map((vm) => ({ name: vm.spec.name, memoryMiB: vm.spec.memoryMiB })),
      candidates,
      preflight,
    );
    const memory = new Map(vms.map((vm) => [vm.spec.name, vm.spec.memoryMiB]));
    return {
      host: this.options.hostName,
      candidates: candidateAddresses,
      placements: placements.map((p) => ({
        vm: p.vm,
        memoryMiB: memory.get(p.vm) ?? 0,
        destination: p.destination?.address,
        host: p.destination?.name,
        reasons: p.reasons,
      })),
    };
  }
}
