import { writeFile } from 'node:fs/promises';
import type { AgentClient, MigrationEvent, MigrationRecord } from '../agent/index.js';
import type { MigrationSample } from '../migration/index.js';
import {
  chartInput,
  renderMigrationHtml,
  renderMigrationSvg,
  type MigrationChartInput,
} from '../chart/index.js';
import { UsageError, describeError } from '../errors.js';

/** Everything the chart of migration `id` needs, from its agent's journal. */
export async function fetchChartInput(client: AgentClient, id: string): Promise<MigrationChartInput> {
  const path = `/v1/migrations/${encodeURIComponent(id)}`;
  const [view, { samples }] = await Promise.all([
    client.get<MigrationRecord & { events?: MigrationEvent[] }>(path),
    client.get<{ samples: MigrationSample[] }>(`${path}/samples`),
  ]);
  return chartInput(view, view.events ?? [], samples);
}

/** Writes the chart as SVG and/or HTML; returns the files written. */
export async function writeChartFiles(
  input: MigrationChartInput,
  files: { svg?: string | undefined; html?: string | undefined },
): Promise<string[]> {
  const written: string[] = [];
  for (const [file, render] of [
    [files.svg, renderMigrationSvg],
    [files.html, renderMigrationHtml],
  ] as const) {
    if (file === undefined) continue;
    try {
      await writeFile(file, render(input));
    } catch (err) {
      throw new UsageError(`cannot write the chart to ${file}: ${describeError(err)}`, { cause: err });
    }
    written.push(file);
  }
  return written;
}
