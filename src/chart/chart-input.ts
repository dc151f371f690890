import { sumDiskSamples } from '../block/index.js';
import type { AgentApi, MigrationEvent, MigrationRecord } from '../agent/index.js';
import type { MigrationReport, MigrationSample } from '../migration/index.js';
import type { MigrationSettings } from '../policy/index.js';
import type { ChartSample, MigrationChartInput } from './migration-chart.js';

/** A journaled sample as the chart reads it. */
export function chartSample(s: MigrationSample): ChartSample {
  return {
    time: s.time,
    throughputMbps: s.throughputMbps,
    remainingBytes: s.remainingBytes,
    totalBytes: s.totalBytes,
    dirtyRateBps: s.dirtyRateBps,
    pass: s.pass,
    cpuThrottlePct: s.cpuThrottlePct,
    expectedDowntimeMs: s.expectedDowntimeMs,
    downtimeLimitMs: s.downtimeLimitMs ?? null,
    // Block migration: the disk copies' remaining bytes, on the chart's disk series.
    ...(s.disks !== undefined && s.disks.length > 0
      ? { remainingDiskBytes: sumDiskSamples(s.disks).remainingBytes }
      : {}),
  };
}

/** The chart of a migration from what the agent's API returns for it. */
export function chartInput(
  record: Pick<MigrationRecord, 'id' | 'vm' | 'startedAt' | 'finishedAt' | 'plan' | 'report'>,
  events: readonly MigrationEvent[],
  samples: readonly MigrationSample[],
): MigrationChartInput {
  const plan = record.plan as Partial<MigrationSettings> | null;
  return {
    id: record.id,
    vm: record.vm,
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    events,
    samples: samples.map(chartSample),
    report: (record.report as MigrationReport | null) ?? null,
    downtimeSteps: Array.isArray(plan?.downtimeSteps) ? plan.downtimeSteps : [],
  };
}

/** Everything the chart of migration `id` needs, from its agent's journal. */
export async function fetchChartInput(agent: AgentApi, id: string): Promise<MigrationChartInput> {
  const [view, samples] = await Promise.all([agent.migration(id), agent.samples(id)]);
  return chartInput(view, view.events, samples);
}
