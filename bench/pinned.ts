/** The pinned benchmark's figures (pure): relay against cipher, projections, and the README block. */
import { checkAgainstPinned, projectThroughput } from './projection.js';
import type { BenchResult, PinnedFigures } from './report.js';

/** The hosts the README projects to: the 16-core hosts on a 25 Gbit/s link, and a smaller pair. */
export const PROJECTED_HOSTS = [
  { cores: 4, linkGbps: 10 },
  { cores: 16, linkGbps: 25 },
] as const;

export function pinnedFigures(
  results: readonly BenchResult[],
  cipherCpuPerGiB: number,
  hosts: readonly { cores: number; linkGbps: number }[] = PROJECTED_HOSTS,
): PinnedFigures[] {
  return results.map((r) => {
    const costs = { source: r.cpuSourcePerGiBByKind, destination: r.cpuDestinationPerGiBByKind };
    const channels = r.channels ?? 1;
    const relay = { source: costs.source.relay ?? 0, destination: costs.destination.relay ?? 0 };
    const ratio = (v: number): number => Math.round((v / cipherCpuPerGiB) * 10) / 10;
    return {
      transport: r.transport,
      relayVsCipher:
        r.transport.startsWith('tunnelled') && cipherCpuPerGiB > 0
          ? { source: ratio(relay.source), destination: ratio(relay.destination) }
          : undefined,
      pinnedCheck: checkAgainstPinned(costs, channels, r.gbps),
      projections: hosts.map((h) => ({ ...h, ...projectThroughput({ costs, channels, ...h }) })),
    };
  });
}

/** README.md with the text between `<!-- NAME -->` and `<!-- /NAME -->` replaced by `lines`. */
export function replaceReadmeBlock(readme: string, name: string, lines: readonly string[]): string {
  const start = `<!-- ${name} -->`;
  const end = `<!-- /${name} -->`;
  const from = readme.indexOf(start);
  const to = readme.indexOf(end);
  if (from < 0 || to < from) throw new Error(`README.md has no ${start} ... ${end} block`);
  return `${readme.slice(0, from + start.length)}\n${lines.join('\n')}\n${readme.slice(to)}`;
}
