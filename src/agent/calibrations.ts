import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  CALIBRATION_VM_PREFIX,
  calibrate,
  transportFiguresFor,
  type CalibrationResult,
  type PastMigration,
} from '../calibration/index.js';
import type { ResolvedOptions } from '../config/index.js';
import { MigrationError, UsageError } from '../errors.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../guest/index.js';
import type { MigrationReport } from '../migration/index.js';
import { planMigration, type MigrationPlan, type TransportFigures } from '../policy/index.js';
import { parseVmSpec } from '../qemu/index.js';
import type { WorkerStats } from '../transport/index.js';
import type { AgentApi, HostSummary } from './api-client.js';
import type { Journal, MigrationRecord } from './journal.js';
import type { OutgoingMigrations } from './outgoing.js';
import type { VmRegistry } from './vm-registry.js';

export interface CalibrationsOptions {
  registry: VmRegistry;
  journal: Journal;
  outgoing: OutgoingMigrations;
  peerApi: (address: string) => AgentApi;
  hostSummary: () => HostSummary;
  migrationOptions: ResolvedOptions;
  /** The relay workers' counters (their CPU time is part of a tunnelled migration's cost). */
  relayStats: () => Promise<WorkerStats[]>;
}

/** The guest memory a calibration migrates by default: short, yet long enough to reach full speed. */
export const CALIBRATION_MEMORY_MIB = 256;

const CLK_TCK = 100;

/** A process's user + system CPU seconds from /proc (Linux reports them in 1/100 s). */
function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** A journaled migration as the figures read it; undefined for one that says nothing about a transport. */
function pastMigration(m: MigrationRecord): PastMigration | undefined {
  const report = m.report as Partial<MigrationReport> | null;
  if (m.role !== 'source' || report === null || typeof report.gbps !== 'number') return undefined;
  if (m.vm.startsWith(CALIBRATION_VM_PREFIX)) return undefined;
  return {
    peer: m.peer,
    state: m.state,
    transport: m.transport,
    tls: m.plan.tls,
    tunnel: m.plan.tunnel,
    bandwidthMiBps: m.plan.bandwidthMiBps,
    gbps: report.gbps,
    finishedAt: m.finishedAt ?? m.updatedAt,
  };
}

/**
 * `vmferry host calibrate`: measures each secure transport to a peer with trial
 * migrations of a throwaway guest and journals the figures; gathers the figures
 * the plan compares (calibrations, past migrations); and plans a migration to a
 * peer without a VM (`vmferry plan --agent`).
 */
export class AgentCalibrations {
  private running: Promise<unknown> | undefined;

  constructor(private readonly o: CalibrationsOptions) {}

  /** What this host measured to the agent at `to`. */
  figuresTo(to: string): TransportFigures {
    const calibrations = this.o.journal.listCalibrations(to).map((c) => c.result as CalibrationResult);
    const migrations = this.o.journal
      .listMigrations({ active: false })
      .map(pastMigration)
      .filter((m): m is PastMigration => m !== undefined);
    return transportFiguresFor(to, calibrations, migrations);
  }

  /** The journaled calibrations, newest first (of one peer when given). */
  list(peer?: string): CalibrationResult[] {
    return this.o.journal.listCalibrations(peer).map((c) => c.result as CalibrationResult);
  }

  /** The plan for a live migration of a guest of `memoryMiB` to the agent at `to`, with the figures to it. */
  async planTo(to: string, memoryMiB: number): Promise<MigrationPlan & { figures: TransportFigures }> {
    const source = this.o.hostSummary();
    const destination = await this.o.outgoing.destinationApi(to).host();
    const figures = this.figuresTo(to);
    const plan = planMigration({
      options: this.o.migrationOptions,
      kind: 'live',
      memoryMiB,
      source,
      destination,
      transportFigures: figures,
    });
    return { ...plan, figures };
  }

  /** Measures each secure transport to `peer` (one calibration at a time on a host) and journals it. */
  async calibrate(peer: string, o: { memoryMiB?: number; runs?: number } = {}): Promise<CalibrationResult> {
    if (this.running !== undefined)
      throw new UsageError('a calibration is already running on this host', {
        hint: 'wait for it: vmferry host calibrations lists the finished ones',
      });
    const memoryMiB = o.memoryMiB ?? CALIBRATION_MEMORY_MIB;
    const runs = o.runs ?? 1;
    const work = calibrate(peer, { memoryMiB, runs }, this.deps());
    this.running = work;
    try {
      const result = await work;
      this.o.journal.addCalibration({ id: result.id, peer, startedAt: result.startedAt, result });
      return result;
    } finally {
      this.running = undefined;
    }
  }

  private deps(): Parameters<typeof calibrate>[2] {
    const { registry, outgoing } = this.o;
    return {
      startVm: async (name, memoryMiB) => {
        const append = guestAppend({ memMiB: memoryMiB, dirtyMiBps: 0, verifyMiBps: 16 });
        const vm = await registry.start(
          parseVmSpec({
            name,
            memoryMiB: guestRamMiB(memoryMiB),
            vcpus: 1,
            kernel: guestKernelPath(),
            append,
          }),
        );
        // The guest has filled its memory with non-zero data once it reports healthy.
        const health = await vm.guest.waitHealthy({ afterSeq: undefined, minOk: 2, timeoutMs: 120_000 });
        if (health.state !== 'ok')
          throw new MigrationError(`the calibration guest did not come up: ${health.state}`);
      },
      stopVm: (name) => registry.stop(name),
      trialMigration: async (vm, to, overrides) => {
        const { id } = await outgoing.start(vm, to, overrides, { trial: true });
        return outgoing.finished(id);
      },
      cpuSeconds: async (vm) => {
        const pid = registry.get(vm).qemu?.pid;
        const own = process.cpuUsage();
        const workers = await this.o.relayStats();
        const relay = workers.reduce((s, w) => s + w.cpuUserMicros + w.cpuSystemMicros, 0);
        return (pid === undefined ? 0 : processCpuSeconds(pid)) + (own.user + own.system + relay) / 1e6;
      },
      now: () => Date.now(),
      newId: () => randomUUID(),
    };
  }
}
