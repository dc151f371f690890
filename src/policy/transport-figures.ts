import type { Transport } from './types.js';

/** The two secure transports the unset live_migration_tunnelled chooses between. */
export type SecureTransport = 'nativeTls' | 'tunnelled';

/** One secure transport's measured throughput from the source host to one destination. */
export interface TransportFigure {
  readonly gbps: number;
  /** CPU seconds per GiB sent, all of the source host's processes of the migration, when measured. */
  readonly cpuSecondsPerGiB?: number;
  /** Day of the newest measurement, YYYY-MM-DD. */
  readonly date: string;
  /** Migrations the figure is the median of (1 for a calibration run). */
  readonly migrations: number;
}

export type FigurePair = Readonly<Partial<Record<SecureTransport, TransportFigure>>>;

/** What the agent measured to one destination; the plan compares the transports with it. */
export interface TransportFigures {
  /** The newest `vmferry host calibrate` to this destination. */
  readonly calibration?: FigurePair;
  /** The median of the recent completed migrations to this destination, per transport (journal reports). */
  readonly migrations?: FigurePair;
}

/** The figures one comparison uses, and where each came from. */
export interface ChosenFigures {
  readonly nativeTls?: TransportFigure & { origin: FigureOrigin };
  readonly tunnelled?: TransportFigure & { origin: FigureOrigin };
}

export type FigureOrigin = 'calibration' | 'migrations';

const usable = (f: TransportFigure | undefined): f is TransportFigure =>
  f !== undefined && Number.isFinite(f.gbps) && f.gbps > 0;

/**
 * Which figures to compare: both transports from one origin when one has both
 * (calibration first: it measured both the same way at the same time), else
 * each transport from the best origin that has it.
 */
export function chooseFigures(figures: TransportFigures): ChosenFigures {
  const origins: FigureOrigin[] = ['calibration', 'migrations'];
  const tagged = (origin: FigureOrigin, t: SecureTransport) => {
    const f = figures[origin]?.[t];
    return usable(f) ? { ...f, origin } : undefined;
  };
  for (const origin of origins) {
    const nativeTls = tagged(origin, 'nativeTls');
    const tunnelled = tagged(origin, 'tunnelled');
    if (nativeTls !== undefined && tunnelled !== undefined) return { nativeTls, tunnelled };
  }
  const first = (t: SecureTransport) => origins.map((o) => tagged(o, t)).find((f) => f !== undefined);
  const nativeTls = first('nativeTls');
  const tunnelled = first('tunnelled');
  return {
    ...(nativeTls !== undefined ? { nativeTls } : {}),
    ...(tunnelled !== undefined ? { tunnelled } : {}),
  };
}

/** "3.2 Gbit/s" with one decimal, as reasons quote throughput. */
function gbpsText(f: TransportFigure): string {
  return `${f.gbps.toFixed(1)} Gbit/s`;
}

/** "calibrated 2026-11-30" or "median of 3 migrations to this host, last 2026-11-30". */
export function figureOrigin(f: TransportFigure & { origin: FigureOrigin }): string {
  if (f.origin === 'calibration') return `calibrated ${f.date}`;
  const n = f.migrations === 1 ? 'one migration' : `median of ${f.migrations} migrations`;
  return `${n} to this host, last ${f.date}`;
}

/**
 * The faster secure transport by the figures: higher Gbit/s; on a tie, less
 * source CPU per GiB; else native TLS (no relay processes). Undefined without
 * figures for both.
 */
export function fasterByFigures(
  chosen: ChosenFigures,
): { transport: SecureTransport; text: string } | undefined {
  const { nativeTls, tunnelled } = chosen;
  if (nativeTls === undefined || tunnelled === undefined) return undefined;
  let transport: SecureTransport;
  if (tunnelled.gbps !== nativeTls.gbps)
    transport = tunnelled.gbps > nativeTls.gbps ? 'tunnelled' : 'nativeTls';
  else
    transport =
      (tunnelled.cpuSecondsPerGiB ?? Infinity) < (nativeTls.cpuSecondsPerGiB ?? Infinity)
        ? 'tunnelled'
        : 'nativeTls';
  const sameOrigin = nativeTls.origin === tunnelled.origin && nativeTls.date === tunnelled.date;
  const tunnelText = `tunnel ${gbpsText(tunnelled)}`;
  const nativeText = `native TLS ${gbpsText(nativeTls)}`;
  const [winner, loser] = transport === 'tunnelled' ? [tunnelText, nativeText] : [nativeText, tunnelText];
  const text = sameOrigin
    ? `${winner} vs ${loser}, ${figureOrigin(tunnelled)}`
    : transport === 'tunnelled'
      ? `${tunnelText} (${figureOrigin(tunnelled)}) vs ${nativeText} (${figureOrigin(nativeTls)})`
      : `${nativeText} (${figureOrigin(nativeTls)}) vs ${tunnelText} (${figureOrigin(tunnelled)})`;
  return { transport, text };
}

/** What vmferry's benchmark measured for one QEMU version: the default where a pair of hosts has no figures. */
export interface BenchmarkedDefault {
  /** QEMU major.minor. */
  readonly qemu: string;
  readonly transport: Transport;
  readonly evidence: string;
}

/**
 * The documented defaults (README "Benchmark"), one row per QEMU version the
 * benchmark ran on. Add a row when the benchmark runs on another version.
 */
export const BENCHMARKED_DEFAULTS: readonly BenchmarkedDefault[] = [
  {
    qemu: '7.2',
    transport: 'tunnelled',
    evidence:
      "vmferry's benchmark on QEMU 7.2: tunnel 4.36 Gbit/s vs native TLS 1.37 Gbit/s with a core per host " +
      '(npm run bench -- --pin, 2026-12-01, native relay; 3.76 with the TypeScript relay; ' +
      '2.05 vs 1.32 on 2 shared cores, 2026-11-26; ' +
      'QEMU 7.2 writes one TLS record and one syscall per 4 KiB page)',
  },
];

function majorMinor(version: string | undefined): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(version ?? '');
  return m === null ? undefined : [Number(m[1]), Number(m[2])];
}

/**
 * The benchmarked default for a QEMU version: its own row, else the newest
 * benchmarked version older than it, else the oldest row; and how the reason
 * names the match.
 */
export function benchmarkedDefault(
  qemuVersion: string | undefined,
  table: readonly BenchmarkedDefault[] = BENCHMARKED_DEFAULTS,
): { row: BenchmarkedDefault; match: string } {
  const rows = [...table].sort((x, y) => compare(majorMinor(x.qemu), majorMinor(y.qemu)));
  const oldest = rows[0];
  if (oldest === undefined) throw new Error('no benchmarked transport default');
  const wanted = majorMinor(qemuVersion);
  if (wanted === undefined)
    return { row: oldest, match: `QEMU version unknown: the default benchmarked on QEMU ${oldest.qemu}` };
  const exact = rows.find((r) => compare(majorMinor(r.qemu), wanted) === 0);
  if (exact !== undefined) return { row: exact, match: `QEMU ${qemuVersion}` };
  const below = rows.filter((r) => compare(majorMinor(r.qemu), wanted) < 0).at(-1);
  const row = below ?? oldest;
  return { row, match: `QEMU ${qemuVersion}, nearest benchmarked version ${row.qemu}` };
}

function compare(a: [number, number] | undefined, b: [number, number] | undefined): number {
  const [am, an] = a ?? [0, 0];
  const [bm, bn] = b ?? [0, 0];
  return am !== bm ? am - bm : an - bn;
}
