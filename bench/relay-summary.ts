/**
 * The relay benchmark's pure part: variants per TLS 1.3 suite, and each variant's
 * median and range against the cost of its cipher alone.
 */
import { DEFAULT_CIPHER_SUITES, type NativeRelayTuning, type RelayTuning } from '../src/transport/index.js';
import { median } from './report.js';

/** One configuration of the relay benchmark (tunnel-synthetic.ts). */
export interface Variant {
  label: string;
  tuning?: Partial<RelayTuning>;
  workers?: number;
  channels?: number;
  /**
   * true: the workers keep freed heap and serve buffers up to 1 MiB from it
   * (glibc tunables), to see whether page faults on fresh buffers matter.
   */
  keepHeap?: boolean;
  /** Node flags for the workers. */
  execArgv?: string[];
  /** `native`: both ends through native/vmferry-relay processes instead of the front doors' workers. */
  relay?: 'native' | 'node';
  /** The native relay's data-path knobs (with relay native). */
  native?: NativeRelayTuning;
}

/** What one run of a variant measured, with its suite's cipher alone measured right after it. */
export interface Measured {
  gbps: number;
  srcCpuPerGiB: number;
  dstCpuPerGiB: number;
  faultsPerGiB: number;
  /** The suite's cipher alone, measured right after this run (cipher-floor.ts). */
  cipherCpuPerGiB: number;
  /** Native relay: how the source relay's connections sent their records, as they reported it on closing. */
  sendPath?: SendPath;
  /** Native relay: how the destination relay's connections received the source's records. */
  receivePath?: ReceivePath;
}

/** `mixed`: connections of one run, or runs of one variant, did not all send the same way. */
export type SendPath = 'sealed' | 'ssl-write' | 'mixed';
export type ReceivePath = 'opened' | 'ssl-read' | 'mixed';

/** One path for what the connections (or runs) reported; undefined when none reported one. */
export function pathOf<P extends string>(
  reported: readonly (P | 'mixed' | undefined)[],
): P | 'mixed' | undefined {
  const known = new Set(reported.filter((p) => p !== undefined));
  if (known.size === 0) return undefined;
  return known.size === 1 ? [...known][0] : 'mixed';
}

export const sendPathOf = (reported: readonly (SendPath | undefined)[]): SendPath | undefined =>
  pathOf(reported);

/** One variant per TLS 1.3 suite (--suites), each with the suite as the relay's only one. */
export function suiteVariants(suites: readonly string[], base: Variant[]): Variant[] {
  if (suites.length === 0) return base.length > 0 ? base : [{ label: 'default' }];
  const bases = base.length > 0 ? base : [{ label: '' }];
  return bases.flatMap((b) =>
    suites.map((suite) => ({
      ...b,
      label: b.label === '' ? suite : `${b.label} ${suite}`,
      tuning: { ...b.tuning, cipherSuites: suite },
    })),
  );
}

export type VariantSummary = ReturnType<typeof summarizeVariant>;

/** Median and range of one variant's runs; each side's relay against its cipher, run by run. */
export function summarizeVariant(label: string, suite: string, runs: readonly Measured[]) {
  const pick = (f: (m: Measured) => number) => {
    const v = runs.map(f);
    const r = (x: number) => Math.round(x * 1000) / 1000;
    return { median: r(median(v)), min: r(Math.min(...v)), max: r(Math.max(...v)) };
  };
  const sendPath = sendPathOf(runs.map((m) => m.sendPath));
  const receivePath = pathOf(runs.map((m) => m.receivePath));
  return {
    label,
    suite,
    ...(sendPath !== undefined ? { sendPath } : {}),
    ...(receivePath !== undefined ? { receivePath } : {}),
    runs: runs.length,
    gbps: pick((m) => m.gbps),
    sourceRelayCpuPerGiB: pick((m) => m.srcCpuPerGiB),
    destinationRelayCpuPerGiB: pick((m) => m.dstCpuPerGiB),
    cipherCpuPerGiB: pick((m) => m.cipherCpuPerGiB),
    sourceVsCipher: pick((m) => m.srcCpuPerGiB / m.cipherCpuPerGiB),
    destinationVsCipher: pick((m) => m.dstCpuPerGiB / m.cipherCpuPerGiB),
    faultsPerGiB: Math.round(median(runs.map((m) => m.faultsPerGiB))),
  };
}

/** One markdown table row. */
export function summaryLine(s: VariantSummary): string {
  const f = (x: { median: number; min: number; max: number }, d = 2) =>
    `${x.median.toFixed(d)} (${x.min.toFixed(d)}-${x.max.toFixed(d)})`;
  const paths = [s.sendPath, s.receivePath].filter((p) => p !== undefined);
  const label = paths.length > 0 ? `${s.label} (${paths.join(', ')})` : s.label;
  return (
    `| ${label} | ${f(s.gbps)} | ${f(s.sourceRelayCpuPerGiB)} | ${f(s.destinationRelayCpuPerGiB)} | ` +
    `${f(s.cipherCpuPerGiB, 3)} | ${s.sourceVsCipher.median.toFixed(2)}x / ${s.destinationVsCipher.median.toFixed(2)}x |`
  );
}

/** The suite a variant's relay negotiates: the first of its list (the server's order decides). */
export function suiteOf(v: Variant): string {
  return (v.tuning?.cipherSuites ?? DEFAULT_CIPHER_SUITES).split(':')[0] ?? '';
}
