/**
 * What a transport would reach on other hosts, from what the pinned benchmark
 * measured: CPU seconds per GiB of each stage (QEMU, the agent, the relay) on
 * each side. Pure.
 *
 * A migration is a pipeline; its throughput is the slowest of:
 *  - the link (L Gbit/s);
 *  - each host's cores: N cores / that host's CPU seconds per GiB in all;
 *  - each stage's parallelism: a stage that can use at most P cores (QEMU: one
 *    thread per channel; the relay: one worker per channel connection, at most
 *    the host's workers; the agent's main process: one) reaches P / its CPU
 *    seconds per GiB.
 * CPU per GiB is taken as fixed (no cache or frequency effects), so the figures
 * are an upper bound where a host has cores to spare.
 */
import type { CpuByKind } from './report.js';

export interface StageCosts {
  /** CPU seconds per GiB by kind of process on one side. */
  source: CpuByKind;
  destination: CpuByKind;
}

export interface ProjectionInput {
  costs: StageCosts;
  /** Migration streams: 1 = QEMU's single stream; more = multifd channels (each its own tunnel connection). */
  channels: number;
  /** Free cores on each host. */
  cores: number;
  /** Link speed, Gbit/s; Infinity for no link limit. */
  linkGbps: number;
  /** Relay worker processes per agent (default: one per 2 cores, as the plan decides). */
  relayWorkers?: number;
}

export interface Projection {
  gbps: number;
  /** What limits it: 'link', 'source cores', 'destination qemu', ... */
  limit: string;
}

const GBIT_PER_GIB = (8 * 1024 ** 3) / 1e9;

/** The throughput the pipeline reaches, and the stage that limits it. */
export function projectThroughput(input: ProjectionInput): Projection {
  const { costs, channels, cores, linkGbps } = input;
  if (!(cores >= 1) || !(channels >= 1) || !(linkGbps > 0))
    throw new RangeError(
      `cores and channels must be >= 1 and the link > 0, got ${cores}, ${channels}, ${linkGbps}`,
    );
  const workers = input.relayWorkers ?? Math.max(1, Math.floor(cores / 2));
  const parallelism: Record<string, number> = {
    qemu: Math.min(channels, cores),
    relay: Math.min(workers, channels, cores),
    agent: 1,
    other: 1,
  };
  const limits: Projection[] = [{ gbps: linkGbps, limit: 'link' }];
  for (const side of ['source', 'destination'] as const) {
    const byKind = costs[side];
    const total = Object.values(byKind).reduce((s, v) => s + (v ?? 0), 0);
    if (total > 0) limits.push({ gbps: (cores / total) * GBIT_PER_GIB, limit: `${side} cores` });
    for (const [kind, cpu] of Object.entries(byKind)) {
      if (cpu === undefined || cpu <= 0) continue;
      limits.push({ gbps: ((parallelism[kind] ?? 1) / cpu) * GBIT_PER_GIB, limit: `${side} ${kind}` });
    }
  }
  const slowest = limits.reduce((a, b) => (b.gbps < a.gbps ? b : a));
  return { gbps: Math.round(slowest.gbps * 100) / 100, limit: slowest.limit };
}

/** The projection for the pinned hosts themselves (one core each, no link limit), beside what was measured. */
export function checkAgainstPinned(
  costs: StageCosts,
  channels: number,
  measuredGbps: number,
): { projectedGbps: number; measuredGbps: number; ratio: number; limit: string } {
  const p = projectThroughput({ costs, channels, cores: 1, linkGbps: Infinity, relayWorkers: 1 });
  return {
    projectedGbps: p.gbps,
    measuredGbps,
    ratio: Math.round((measuredGbps / p.gbps) * 100) / 100,
    limit: p.limit,
  };
}
