import { writeFile } from 'node:fs/promises';
import type { AgentApi } from '../agent/index.js';
import {
  fetchChartInput,
  renderMigrationHtml,
  renderMigrationSvg,
  type MigrationChartInput,
} from '../chart/index.js';
import { UsageError, describeError } from '../errors.js';
import { printJson, printLines, type CliIo } from './io.js';

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

/** `vmferry migration show ID --svg FILE --html FILE`: draws the chart and says where it went. */
export async function drawChart(
  io: CliIo,
  agent: AgentApi,
  id: string,
  flags: { svg?: string; html?: string; json?: boolean },
): Promise<void> {
  const written = await writeChartFiles(await fetchChartInput(agent, id), flags);
  if (flags.json === true) printJson(io, { id, written });
  else
    printLines(
      io,
      written.map((f) => `chart of migration ${id} written to ${f}`),
    );
}
