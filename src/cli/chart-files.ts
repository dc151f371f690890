import { writeFile } from 'node:fs/promises';
import { renderMigrationHtml, renderMigrationSvg, type MigrationChartInput } from '../chart/index.js';
import { UsageError, describeError } from '../errors.js';

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
