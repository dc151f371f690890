/**
 * A migration drawn on one time axis: its journaled samples (throughput,
 * remaining memory, dirty rate, downtime limit, CPU throttle) in stacked panels,
 * and its phases (setup, pre-copy passes, post-copy switch, hand-over, end) from
 * the journal's state history as marks across every panel. Pure: data in, SVG
 * text out, so the CLI, the dashboard and the tests draw the same picture.
 */

/** One progress sample, as the chart reads it. */
export interface ChartSample {
  /** Milliseconds since the Unix epoch. */
  time: number;
  throughputMbps: number | null;
  remainingBytes: number;
  totalBytes: number;
  /** Disk bytes still to copy, when the migration copies disks. */
  remainingDiskBytes?: number | null;
  dirtyRateBps: number | null;
  /** QEMU's dirty-sync-count: the pre-copy pass. */
  pass: number;
  cpuThrottlePct: number | null;
  /** The downtime limit in force, when the sample records it. */
  downtimeLimitMs?: number | null;
  expectedDowntimeMs?: number | null;
}

/** One state change from the journal. */
export interface ChartEvent {
  time: number;
  from: string | null;
  to: string;
  message: string | null;
}

/** The report's headline figures (a subset of MigrationReport). */
export interface ChartHeadline {
  status: string;
  from: string;
  to: string;
  transport: string;
  tls: boolean;
  bytes: number;
  seconds: number;
  gbps: number;
  downtimeMs: number | undefined;
  iterations: number;
  maxCpuThrottlePct: number;
  postcopySwitchSeconds: number | undefined;
  guest: string;
}

export interface MigrationChartInput {
  id: string;
  vm: string;
  /** Migration start (ms since the epoch): the time axis' zero. */
  startedAt: number;
  finishedAt: number | null;
  samples: readonly ChartSample[];
  events: readonly ChartEvent[];
  report?: ChartHeadline | null;
  /**
   * The plan's downtime steps ([delay s, limit ms], counted from the start of
   * sending), drawn when the samples do not record the limit in force.
   */
  downtimeSteps?: readonly (readonly [number, number])[];
}

export type SeriesKey =
  | 'throughput'
  | 'remaining-ram'
  | 'remaining-disk'
  | 'dirty-rate'
  | 'downtime-limit'
  | 'expected-downtime'
  | 'cpu-throttle';

export interface ChartSeries {
  key: SeriesKey;
  label: string;
  color: string;
  /** A step line: each value holds until the next. */
  step: boolean;
  dashed: boolean;
  /** [seconds since start, value in the panel's unit]; null breaks the line. */
  points: [number, number | null][];
}

export interface ChartPanel {
  title: string;
  unit: string;
  /** Top of the value axis (bottom is 0). */
  max: number;
  series: ChartSeries[];
  /** Geometry, in SVG units. */
  top: number;
  height: number;
}

export type PhaseKind = 'setup' | 'precopy' | 'pass' | 'postcopy' | 'handover' | 'end';

export interface PhaseMark {
  kind: PhaseKind;
  /** Seconds since start. */
  t: number;
  label: string;
}

export interface PhaseBand {
  phase: 'setup' | 'precopy' | 'postcopy' | 'handover';
  from: number;
  to: number;
}

export interface ChartModel {
  title: string;
  headline: string;
  /** Seconds the axis spans. */
  duration: number;
  panels: ChartPanel[];
  marks: PhaseMark[];
  bands: PhaseBand[];
  width: number;
  height: number;
  /** The plot area every panel shares horizontally. */
  plotLeft: number;
  plotWidth: number;
  bandTop: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const WIDTH = 960;
const PLOT_LEFT = 78;
const PLOT_RIGHT = 24;
const BAND_TOP = 74;
const BAND_HEIGHT = 16;
const PANEL_HEIGHT = 96;
const PANEL_GAP = 34;
const AXIS_HEIGHT = 40;

const COLORS = {
  throughput: '#1f77b4',
  'remaining-ram': '#2ca02c',
  'remaining-disk': '#8c564b',
  'dirty-rate': '#d62728',
  'downtime-limit': '#9467bd',
  'expected-downtime': '#9467bd',
  'cpu-throttle': '#ff7f0e',
} as const satisfies Record<SeriesKey, string>;

const BAND_COLORS: Record<PhaseBand['phase'], string> = {
  setup: '#d9d9d9',
  precopy: '#c6dbef',
  postcopy: '#fdd0a2',
  handover: '#dadaeb',
};

const TERMINAL = ['completed', 'failed', 'cancelled'];

/** A round number at or above `value` (1, 2, 2.5 or 5 times a power of ten). */
export function niceCeiling(value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value - 1e-9 * power) return m * power;
  return 10 * power;
}

function seconds(input: MigrationChartInput, time: number): number {
  return Math.max(0, (time - input.startedAt) / 1000);
}

/** The first time the migration entered `state`, from the journal's history. */
function enteredAt(events: readonly ChartEvent[], state: string): number | undefined {
  return events.find((e) => e.to === state)?.time;
}

/** Phase marks from the state history and the samples' pass counter. */
export function phaseMarks(input: MigrationChartInput): PhaseMark[] {
  const marks: PhaseMark[] = [{ kind: 'setup', t: 0, label: 'setup' }];
  const migrating = enteredAt(input.events, 'migrating');
  if (migrating !== undefined)
    marks.push({ kind: 'precopy', t: seconds(input, migrating), label: 'pre-copy' });
  let pass = 1;
  for (const s of input.samples) {
    if (s.pass > pass) {
      pass = s.pass;
      marks.push({ kind: 'pass', t: seconds(input, s.time), label: `pass ${pass}` });
    }
  }
  const postcopy = enteredAt(input.events, 'postcopy');
  if (postcopy !== undefined)
    marks.push({ kind: 'postcopy', t: seconds(input, postcopy), label: 'post-copy switch' });
  const completing = enteredAt(input.events, 'completing');
  if (completing !== undefined)
    marks.push({ kind: 'handover', t: seconds(input, completing), label: 'hand-over' });
  const end = input.events.find((e) => TERMINAL.includes(e.to));
  if (end !== undefined) marks.push({ kind: 'end', t: seconds(input, end.time), label: end.to });
  return marks.sort((a, b) => a.t - b.t);
}

/** Contiguous phases for the band above the panels. */
export function phaseBands(input: MigrationChartInput, duration: number): PhaseBand[] {
  const starts: { phase: PhaseBand['phase']; t: number }[] = [{ phase: 'setup', t: 0 }];
  const at = (state: string): number | undefined => {
    const time = enteredAt(input.events, state);
    return time === undefined ? undefined : seconds(input, time);
  };
  const migrating = at('migrating');
  if (migrating !== undefined) starts.push({ phase: 'precopy', t: migrating });
  const postcopy = at('postcopy');
  if (postcopy !== undefined) starts.push({ phase: 'postcopy', t: postcopy });
  const completing = at('completing');
  if (completing !== undefined) starts.push({ phase: 'handover', t: completing });
  const endEvent = input.events.find((e) => TERMINAL.includes(e.to));
  const end = endEvent === undefined ? duration : seconds(input, endEvent.time);
  starts.sort((a, b) => a.t - b.t);
  return starts
    .map((s, i) => ({ phase: s.phase, from: s.t, to: starts[i + 1]?.t ?? end }))
    .filter((b) => b.to > b.from);
}

function downtimeLimitPoints(input: MigrationChartInput, duration: number): [number, number | null][] {
  const recorded = input.samples.filter((s) => s.downtimeLimitMs !== undefined && s.downtimeLimitMs !== null);
  if (recorded.length > 0) return recorded.map((s) => [seconds(input, s.time), s.downtimeLimitMs ?? null]);
  const steps = input.downtimeSteps ?? [];
  const migrating = enteredAt(input.events, 'migrating');
  if (steps.length === 0 || migrating === undefined) return [];
  const sendingAt = seconds(input, migrating);
  return steps
    .map(([delay, limit]): [number, number | null] => [sendingAt + delay, limit])
    .filter(([t]) => t <= duration);
}

function panelMax(series: readonly ChartSeries[]): number {
  let max = 0;
  for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
  return niceCeiling(max);
}

function series(
  key: SeriesKey,
  label: string,
  points: [number, number | null][],
  options: { step?: boolean; dashed?: boolean } = {},
): ChartSeries {
  return {
    key,
    label,
    color: COLORS[key],
    step: options.step ?? false,
    dashed: options.dashed ?? false,
    points,
  };
}

function formatBytes(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${Math.round(bytes / 1024)} KiB`;
}

/** The title line's figures: what was sent, how fast, the downtime and how it ended. */
export function headlineOf(report: ChartHeadline | null | undefined, fallbackState: string): string {
  if (report === null || report === undefined) return fallbackState;
  const parts = [
    `${report.status}`,
    `${report.transport}${report.tls ? ' + TLS' : ' (clear text)'}`,
    `${formatBytes(report.bytes)} in ${report.seconds.toFixed(2)} s = ${report.gbps.toFixed(2)} Gbit/s`,
    `downtime ${report.downtimeMs === undefined ? 'n/a' : `${report.downtimeMs} ms`}`,
    `${report.iterations} pass(es)`,
  ];
  if (report.maxCpuThrottlePct > 0) parts.push(`throttle up to ${report.maxCpuThrottlePct}%`);
  if (report.postcopySwitchSeconds !== undefined)
    parts.push(`post-copy at ${report.postcopySwitchSeconds} s`);
  parts.push(`guest ${report.guest}`);
  return parts.join(' · ');
}

/** Remaining RAM, and remaining disk when a sample has it. */
function remainingSeries(input: MigrationChartInput, at: (s: ChartSample) => number): ChartSeries[] {
  const hasDisk = input.samples.some(
    (s) => s.remainingDiskBytes !== undefined && s.remainingDiskBytes !== null,
  );
  return [
    series(
      'remaining-ram',
      'RAM',
      input.samples.map((s) => [at(s), s.remainingBytes / MiB]),
    ),
    ...(hasDisk
      ? [
          series(
            'remaining-disk',
            'disk',
            input.samples.map((s): [number, number | null] => [
              at(s),
              s.remainingDiskBytes === undefined || s.remainingDiskBytes === null
                ? null
                : s.remainingDiskBytes / MiB,
            ]),
          ),
        ]
      : []),
  ];
}

/** The downtime limit in force, and QEMU's expected downtime when it gave one. */
function downtimeSeries(
  input: MigrationChartInput,
  at: (s: ChartSample) => number,
  duration: number,
): ChartSeries[] {
  const hasExpected = input.samples.some((s) => (s.expectedDowntimeMs ?? 0) > 0);
  return [
    series('downtime-limit', 'limit', downtimeLimitPoints(input, duration), { step: true }),
    ...(hasExpected
      ? [
          series(
            'expected-downtime',
            'expected',
            input.samples.map((s): [number, number | null] => [at(s), s.expectedDowntimeMs ?? null]),
            { dashed: true },
          ),
        ]
      : []),
  ];
}

/** Everything the picture shows, with its geometry; {@link renderMigrationSvg} only draws it. */
export function migrationChartModel(input: MigrationChartInput): ChartModel {
  const lastTimes = [
    input.finishedAt ?? input.startedAt,
    ...input.samples.map((s) => s.time),
    ...input.events.map((e) => e.time),
  ];
  const duration = Math.max(0.001, seconds(input, Math.max(...lastTimes)));
  const at = (s: ChartSample): number => seconds(input, s.time);

  const definitions: { title: string; unit: string; series: ChartSeries[] }[] = [
    {
      title: 'throughput',
      unit: 'Gbit/s',
      series: [
        series(
          'throughput',
          'throughput',
          input.samples.map((s) => [at(s), s.throughputMbps === null ? null : s.throughputMbps / 1000]),
        ),
      ],
    },
    {
      title: 'remaining',
      unit: 'MiB',
      series: remainingSeries(input, at),
    },
    {
      title: 'dirty rate',
      unit: 'MiB/s',
      series: [
        series(
          'dirty-rate',
          'dirty rate',
          input.samples.map((s) => [at(s), s.dirtyRateBps === null ? null : s.dirtyRateBps / MiB]),
        ),
      ],
    },
    {
      title: 'downtime',
      unit: 'ms',
      series: downtimeSeries(input, at, duration),
    },
    {
      title: 'CPU throttle',
      unit: '%',
      series: [
        series(
          'cpu-throttle',
          'throttle',
          input.samples.map((s) => [at(s), s.cpuThrottlePct]),
          {
            step: true,
          },
        ),
      ],
    },
  ];
  let top = BAND_TOP + BAND_HEIGHT + 22;
  const panels: ChartPanel[] = definitions.map((d) => {
    const panel: ChartPanel = { ...d, max: panelMax(d.series), top, height: PANEL_HEIGHT };
    top += PANEL_HEIGHT + PANEL_GAP;
    return panel;
  });
  const state = input.events.at(-1)?.to ?? 'unknown';
  const report = input.report ?? undefined;
  return {
    title: `migration ${input.id} · ${input.vm}${report !== undefined ? ` · ${report.from} → ${report.to}` : ''}`,
    headline: headlineOf(report, state),
    duration,
    panels,
    marks: phaseMarks(input),
    bands: phaseBands(input, duration),
    width: WIDTH,
    height: top - PANEL_GAP + AXIS_HEIGHT,
    plotLeft: PLOT_LEFT,
    plotWidth: WIDTH - PLOT_LEFT - PLOT_RIGHT,
    bandTop: BAND_TOP,
  };
}

/** The x coordinate of `t` seconds. */
export function xOf(model: ChartModel, t: number): number {
  return model.plotLeft + (t / model.duration) * model.plotWidth;
}

/** The y coordinate of `value` in `panel`. */
export function yOf(panel: ChartPanel, value: number): number {
  return panel.top + panel.height - (Math.min(value, panel.max) / panel.max) * panel.height;
}

function num(n: number): string {
  return (Math.round(n * 10) / 10).toString();
}

export function escapeXml(text: string): string {
  return text.replace(
    /[<>&"']/g,
    (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`,
  );
}

function seriesPath(model: ChartModel, panel: ChartPanel, s: ChartSeries): string {
  const parts: string[] = [];
  let penDown = false;
  let lastX = 0;
  let lastY = 0;
  for (const [t, v] of s.points) {
    if (v === null) {
      penDown = false;
      continue;
    }
    const x = num(xOf(model, t));
    const y = num(yOf(panel, v));
    if (!penDown) parts.push(`M${x},${y}`);
    else if (s.step) parts.push(`H${x}`, `V${y}`);
    else parts.push(`L${x},${y}`);
    penDown = true;
    lastX = t;
    lastY = yOf(panel, v);
  }
  // A step line's last value holds to the end of the axis.
  if (s.step && penDown && lastX < model.duration)
    parts.push(`H${num(xOf(model, model.duration))}`, `V${num(lastY)}`);
  return parts.join(' ');
}

function formatTick(value: number): string {
  if (value >= 100) return Math.round(value).toString();
  if (value >= 10) return (Math.round(value * 10) / 10).toString();
  return (Math.round(value * 100) / 100).toString();
}

/** Round seconds between time-axis ticks, about eight of them. */
export function timeTickStep(duration: number): number {
  return niceCeiling(duration / 8);
}

const MARK_COLORS: Record<PhaseKind, string> = {
  setup: '#636363',
  precopy: '#3182bd',
  pass: '#9ecae1',
  postcopy: '#e6550d',
  handover: '#756bb1',
  end: '#252525',
};

/** The migration as an SVG document (self-contained, no scripts). */
export function renderMigrationSvg(input: MigrationChartInput): string {
  const m = migrationChartModel(input);
  const right = m.plotLeft + m.plotWidth;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${m.width}" height="${m.height}" viewBox="0 0 ${m.width} ${m.height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11" data-duration="${m.duration}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${m.plotLeft}" y="24" font-size="15" font-weight="bold" data-role="title">${escapeXml(m.title)}</text>`,
    `<text x="${m.plotLeft}" y="44" font-size="12" fill="#333" data-role="headline">${escapeXml(m.headline)}</text>`,
  );
  for (const b of m.bands) {
    const x = xOf(m, b.from);
    const w = Math.max(1, xOf(m, b.to) - x);
    out.push(
      `<rect data-band="${b.phase}" x="${num(x)}" y="${m.bandTop}" width="${num(w)}" height="${BAND_HEIGHT}" fill="${BAND_COLORS[b.phase]}"/>`,
    );
    if (w > 50)
      out.push(
        `<text x="${num(x + 4)}" y="${m.bandTop + 12}" font-size="10" fill="#333">${{ setup: 'setup', precopy: 'pre-copy', postcopy: 'post-copy', handover: 'hand-over' }[b.phase]}</text>`,
      );
  }
  const tickStep = timeTickStep(m.duration);
  const lastPanel = m.panels.at(-1);
  const plotTop = m.panels[0]?.top ?? 0;
  const plotBottom = lastPanel === undefined ? 0 : lastPanel.top + lastPanel.height;
  for (let t = 0; t <= m.duration + 1e-9; t += tickStep) {
    const x = num(xOf(m, t));
    out.push(
      `<line x1="${x}" y1="${plotTop}" x2="${x}" y2="${plotBottom}" stroke="#eeeeee"/>`,
      `<text x="${x}" y="${plotBottom + 16}" text-anchor="middle" fill="#555">${formatTick(t)}</text>`,
    );
  }
  out.push(
    `<text x="${num(m.plotLeft + m.plotWidth / 2)}" y="${plotBottom + 32}" text-anchor="middle" fill="#555">seconds since the migration started</text>`,
  );
  for (const p of m.panels) {
    const bottom = p.top + p.height;
    out.push(
      `<g data-panel="${escapeXml(p.title)}">`,
      `<rect x="${m.plotLeft}" y="${p.top}" width="${m.plotWidth}" height="${p.height}" fill="none" stroke="#bdbdbd"/>`,
      `<text x="${m.plotLeft}" y="${p.top - 6}" font-weight="bold" fill="#333">${escapeXml(p.title)} (${escapeXml(p.unit)})</text>`,
      `<text x="${m.plotLeft - 6}" y="${p.top + 4}" text-anchor="end" fill="#555">${formatTick(p.max)}</text>`,
      `<text x="${m.plotLeft - 6}" y="${num(p.top + p.height / 2 + 4)}" text-anchor="end" fill="#555">${formatTick(p.max / 2)}</text>`,
      `<text x="${m.plotLeft - 6}" y="${bottom + 4}" text-anchor="end" fill="#555">0</text>`,
    );
    let legendX = right;
    for (const s of [...p.series].reverse()) {
      out.push(
        `<text x="${legendX}" y="${p.top - 6}" text-anchor="end" fill="${s.color}">${s.dashed ? '- - ' : '— '}${escapeXml(s.label)}</text>`,
      );
      legendX -= 12 + 7 * (s.label.length + 2);
    }
    for (const s of p.series) {
      const d = seriesPath(m, p, s);
      if (d === '') continue;
      out.push(
        `<path data-series="${s.key}" d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/>`,
      );
    }
    out.push('</g>');
  }
  let labelRow = 0;
  for (const mark of m.marks) {
    const x = num(xOf(m, mark.t));
    const color = MARK_COLORS[mark.kind];
    out.push(
      `<line data-phase="${mark.kind}" data-t="${mark.t}" x1="${x}" y1="${m.bandTop}" x2="${x}" y2="${plotBottom}" stroke="${color}" stroke-width="${mark.kind === 'pass' ? 1 : 1.5}"${mark.kind === 'pass' ? ' stroke-dasharray="2,3"' : ''}/>`,
    );
    if (mark.kind !== 'pass' && mark.kind !== 'setup') {
      out.push(
        `<text x="${x}" y="${m.bandTop - 4 - 10 * (labelRow % 2)}" text-anchor="${mark.kind === 'end' ? 'end' : 'middle'}" font-size="10" fill="${color}">${escapeXml(mark.label)}</text>`,
      );
      labelRow++;
    }
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** The chart in a page of its own, with the state history under it. */
export function renderMigrationHtml(input: MigrationChartInput): string {
  const m = migrationChartModel(input);
  const rows = input.events
    .map(
      (e) =>
        `<tr><td>${seconds(input, e.time).toFixed(2)} s</td><td>${escapeXml(e.from ?? '-')} → ${escapeXml(e.to)}</td><td>${escapeXml(e.message ?? '')}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeXml(m.title)}</title>
<style>
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin-top: 16px; font-size: 13px; }
td { padding: 3px 10px; border-bottom: 1px solid #eee; vertical-align: top; }
svg { max-width: 100%; height: auto; }
</style>
</head>
<body>
${renderMigrationSvg(input)}
<table>
<tr><th>time</th><th>state</th><th>why</th></tr>
${rows}
</table>
</body>
</html>
`;
}
