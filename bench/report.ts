/** Pure formatting of benchmark results: statistics, the table and the SVG chart. */

export interface BenchRun {
  transport: string;
  from: string;
  to: string;
  gbps: number;
  seconds: number;
  bytes: number;
  downtimeMs: number | undefined;
  channels: number;
  tls: boolean;
  cpuSourceSeconds: number;
  cpuDestinationSeconds: number;
  /** The same CPU seconds split by kind of process (QEMU, agent main process, relay workers). */
  cpuSourceByKind: CpuByKind;
  cpuDestinationByKind: CpuByKind;
}

/** The processes a benchmark tells apart: a host's QEMUs, its agent's main process, its relay workers. */
export const PROCESS_KINDS = ['qemu', 'agent', 'relay', 'other'] as const;
export type ProcessKind = (typeof PROCESS_KINDS)[number];

/** CPU seconds per kind of process; kinds with no process are absent. */
export type CpuByKind = Partial<Record<ProcessKind, number>>;

export interface BenchResult {
  transport: string;
  /** Multifd channels of the runs (1 = QEMU's single stream). */
  channels?: number;
  /** Median Gbit/s over the runs. */
  gbps: number;
  minGbps: number;
  maxGbps: number;
  /** Median CPU seconds per GiB sent, source and destination side (QEMU + agent processes). */
  cpuSourcePerGiB: number;
  cpuDestinationPerGiB: number;
  /** Median CPU seconds per GiB by kind of process, each side. */
  cpuSourcePerGiBByKind: CpuByKind;
  cpuDestinationPerGiBByKind: CpuByKind;
  runs: BenchRun[];
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

export function summarize(transport: string, runs: readonly BenchRun[]): BenchResult {
  const gbps = runs.map((r) => r.gbps);
  const perGiB = (cpu: (r: BenchRun) => number): number =>
    median(runs.map((r) => cpu(r) / (r.bytes / 1024 ** 3)));
  const perGiBByKind = (side: (r: BenchRun) => CpuByKind): CpuByKind => {
    const out: CpuByKind = {};
    for (const kind of PROCESS_KINDS) {
      if (runs.some((r) => side(r)[kind] !== undefined)) out[kind] = round(perGiB((r) => side(r)[kind] ?? 0));
    }
    return out;
  };
  return {
    transport,
    channels: runs[0]?.channels ?? 1,
    gbps: round(median(gbps)),
    minGbps: round(Math.min(...gbps)),
    maxGbps: round(Math.max(...gbps)),
    cpuSourcePerGiB: round(perGiB((r) => r.cpuSourceSeconds)),
    cpuDestinationPerGiB: round(perGiB((r) => r.cpuDestinationSeconds)),
    cpuSourcePerGiBByKind: perGiBByKind((r) => r.cpuSourceByKind),
    cpuDestinationPerGiBByKind: perGiBByKind((r) => r.cpuDestinationByKind),
    runs: [...runs],
  };
}

/** "qemu 1.10 + relay 0.90": where one side's CPU seconds per GiB went. */
export function cpuBreakdown(byKind: CpuByKind): string {
  const parts = PROCESS_KINDS.filter((k) => byKind[k] !== undefined && (byKind[k] ?? 0) >= 0.005).map(
    (k) => `${k} ${(byKind[k] ?? 0).toFixed(2)}`,
  );
  return parts.length > 0 ? parts.join(' + ') : '-';
}

function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** The table README.md shows: Gbit/s median and range, share of the link (or of native), CPU s/GiB per side. */
export function resultTable(
  results: readonly BenchResult[],
  linkGbps: number | undefined,
  accelerator: string,
): string[] {
  const native = results.find((r) => r.transport === 'native');
  const naive = results.find((r) => r.transport === 'naive-tunnel');
  const header = [
    '| transport | accel | Gbit/s (median) | range | % of native | % of link | x naive | CPU s/GiB source | CPU s/GiB dest | source by process | dest by process |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const rows = results.map((r) => {
    const ofNative =
      native !== undefined && native.gbps > 0 ? `${((r.gbps / native.gbps) * 100).toFixed(0)}%` : '-';
    const ofLink = linkGbps !== undefined ? `${((r.gbps / linkGbps) * 100).toFixed(0)}%` : '-';
    const xNaive = naive !== undefined && naive.gbps > 0 ? `${(r.gbps / naive.gbps).toFixed(1)}x` : '-';
    return `| ${r.transport} | ${accelerator} | ${r.gbps.toFixed(2)} | ${r.minGbps.toFixed(2)}-${r.maxGbps.toFixed(2)} | ${ofNative} | ${ofLink} | ${xNaive} | ${r.cpuSourcePerGiB.toFixed(2)} | ${r.cpuDestinationPerGiB.toFixed(2)} | ${cpuBreakdown(r.cpuSourcePerGiBByKind)} | ${cpuBreakdown(r.cpuDestinationPerGiBByKind)} |`;
  });
  return [...header, ...rows];
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A bar chart of median Gbit/s per transport with min-max whiskers. */
export function resultSvg(results: readonly BenchResult[], title: string): string {
  const width = 640;
  const barArea = 300;
  const left = 60;
  const top = 40;
  const bottom = 50;
  const max = Math.max(1, ...results.map((r) => r.maxGbps)) * 1.15;
  const slot = (width - left - 20) / Math.max(1, results.length);
  const y = (v: number): number => top + barArea - (v / max) * barArea;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${top + barArea + bottom}" font-family="sans-serif" font-size="12">`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + barArea}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top + barArea}" x2="${width - 10}" y2="${top + barArea}" stroke="#333"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    parts.push(
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`,
      `<line x1="${left}" y1="${y(v)}" x2="${width - 10}" y2="${y(v)}" stroke="#ddd"/>`,
    );
  }
  parts.push(
    `<text x="14" y="${top + barArea / 2}" transform="rotate(-90 14 ${top + barArea / 2})" text-anchor="middle">Gbit/s</text>`,
  );
  results.forEach((r, i) => {
    const cx = left + slot * i + slot / 2;
    const w = slot * 0.5;
    const colour =
      r.transport === 'naive-tunnel' ? '#c0392b' : r.transport === 'tunnelled' ? '#27ae60' : '#2980b9';
    parts.push(
      `<rect x="${cx - w / 2}" y="${y(r.gbps)}" width="${w}" height="${top + barArea - y(r.gbps)}" fill="${colour}"/>`,
      `<line x1="${cx}" y1="${y(r.minGbps)}" x2="${cx}" y2="${y(r.maxGbps)}" stroke="#000"/>`,
      `<text x="${cx}" y="${y(r.maxGbps) - 6}" text-anchor="middle">${r.gbps.toFixed(2)}</text>`,
      `<text x="${cx}" y="${top + barArea + 18}" text-anchor="middle">${escapeXml(r.transport)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** What the pinned benchmark adds to each transport: the relay against the cipher, and projections. */
export interface PinnedFigures {
  transport: string;
  /** Relay CPU seconds per GiB over cipherCpuPerGiB, each side (the target: at most 2). */
  relayVsCipher: { source: number; destination: number } | undefined;
  /** The one-core projection from the run's own costs, beside what was measured. */
  pinnedCheck: { projectedGbps: number; measuredGbps: number; ratio: number; limit: string };
  projections: { cores: number; linkGbps: number; gbps: number; limit: string }[];
}

/** The pinned run's second table: CPU per GiB per host and kind against the cipher, and the projections. */
export function pinnedTable(
  results: readonly BenchResult[],
  pinned: readonly PinnedFigures[],
  cipher: { suite: string; cpuPerGiB: number },
): string[] {
  const first = pinned[0]?.projections ?? [];
  const header = [
    `| transport | relay s/GiB source / dest | x cipher (${cipher.suite} ${cipher.cpuPerGiB.toFixed(2)} s/GiB) | projected 1 core (measured) | ${first
      .map((p) => `${p.cores} cores, ${p.linkGbps} Gbit/s`)
      .join(' | ')} |`,
    `|---|---|---|---|${first.map(() => '---|').join('')}`,
  ];
  const rows = pinned.map((p) => {
    const r = results.find((x) => x.transport === p.transport);
    const relay = `${(r?.cpuSourcePerGiBByKind.relay ?? 0).toFixed(2)} / ${(r?.cpuDestinationPerGiBByKind.relay ?? 0).toFixed(2)}`;
    const x =
      p.relayVsCipher === undefined
        ? '-'
        : `${p.relayVsCipher.source.toFixed(1)}x / ${p.relayVsCipher.destination.toFixed(1)}x`;
    const check = `${p.pinnedCheck.projectedGbps.toFixed(2)} (${p.pinnedCheck.measuredGbps.toFixed(2)}, ${p.pinnedCheck.limit})`;
    const projections = p.projections.map((q) => `${q.gbps.toFixed(1)} (${q.limit})`).join(' | ');
    return `| ${p.transport} | ${relay} | ${x} | ${check} | ${projections} |`;
  });
  return [...header, ...rows];
}
