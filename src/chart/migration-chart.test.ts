import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  escapeXml,
  migrationChartModel,
  niceCeiling,
  phaseMarks,
  renderMigrationHtml,
  renderMigrationSvg,
  xOf,
  yOf,
  type ChartModel,
  type ChartSample,
  type MigrationChartInput,
} from './migration-chart.js';

const MiB = 1024 * 1024;
const T0 = 1_700_000_000_000;

/** Samples every second from 2.5 s to 8.5 s: passes 1,1,2,2,3,3,3; throttle from 5.5 s. */
function samples(): ChartSample[] {
  const out: ChartSample[] = [];
  const passes = [1, 1, 2, 2, 3, 3, 3];
  passes.forEach((pass, i) => {
    out.push({
      time: T0 + 2500 + i * 1000,
      throughputMbps: 1000 + 200 * i,
      remainingBytes: (600 - 80 * i) * MiB,
      totalBytes: 640 * MiB,
      dirtyRateBps: i === 0 ? null : 10 * i * MiB,
      pass,
      cpuThrottlePct: i >= 3 ? 20 : 0,
      expectedDowntimeMs: 100 + i,
    });
  });
  return out;
}

function input(overrides: Partial<MigrationChartInput> = {}): MigrationChartInput {
  return {
    id: 'm-1',
    vm: 'web-1',
    startedAt: T0,
    finishedAt: T0 + 9500,
    samples: samples(),
    events: [
      { time: T0, from: null, to: 'preparing', message: null },
      { time: T0 + 2000, from: 'preparing', to: 'migrating', message: 'migrating over native' },
      { time: T0 + 6000, from: 'migrating', to: 'postcopy', message: 'switched to post-copy' },
      { time: T0 + 9000, from: 'postcopy', to: 'completing', message: 'handing over' },
      { time: T0 + 9100, from: 'completing', to: 'completing', message: 'waiting for the destination' },
      { time: T0 + 9500, from: 'completing', to: 'completed', message: null },
    ],
    report: {
      status: 'completed',
      from: 'host-a',
      to: 'host-b',
      transport: 'native',
      tls: true,
      bytes: 2 * 1024 * MiB,
      seconds: 7.25,
      gbps: 2.37,
      downtimeMs: 42,
      iterations: 3,
      maxCpuThrottlePct: 20,
      postcopySwitchSeconds: 6,
      guest: 'ok',
    },
    downtimeSteps: [
      [0, 50],
      [2, 100],
      [4, 200],
    ],
    ...overrides,
  };
}

/** The coordinates of a path's commands (M x,y; L x,y; H x; V y) in order. */
function pathOf(svg: string, series: string): string[] {
  const m = new RegExp(`<path data-series="${series}" d="([^"]*)"`).exec(svg);
  assert.ok(m !== null, `the SVG has no ${series} series`);
  return (m[1] ?? '').split(' ');
}

function markX(svg: string, kind: string): number[] {
  return [...svg.matchAll(new RegExp(`<line data-phase="${kind}" data-t="[^"]*" x1="([^"]*)"`, 'g'))].map(
    (m) => Number(m[1]),
  );
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

function panel(model: ChartModel, title: string) {
  const p = model.panels.find((x) => x.title === title);
  assert.ok(p !== undefined, `no panel ${title}`);
  return p;
}

describe('migration chart', () => {
  it('takes the phases from the state history and the passes from the samples', () => {
    assert.deepEqual(
      phaseMarks(input()).map((m) => [m.kind, m.t, m.label]),
      [
        ['setup', 0, 'setup'],
        ['precopy', 2, 'pre-copy'],
        ['pass', 4.5, 'pass 2'],
        ['postcopy', 6, 'post-copy switch'],
        ['pass', 6.5, 'pass 3'],
        ['handover', 9, 'hand-over'],
        ['end', 9.5, 'completed'],
      ],
    );
  });

  it('shades setup, pre-copy, post-copy and hand-over as contiguous bands up to the end', () => {
    const model = migrationChartModel(input());
    assert.deepEqual(
      model.bands.map((b) => [b.phase, b.from, b.to]),
      [
        ['setup', 0, 2],
        ['precopy', 2, 6],
        ['postcopy', 6, 9],
        ['handover', 9, 9.5],
      ],
    );
    assert.equal(model.duration, 9.5);
  });

  it('draws every series, one point per sample, at its time and value', () => {
    const svg = renderMigrationSvg(input());
    const model = migrationChartModel(input());
    const throughput = pathOf(svg, 'throughput');
    assert.equal(throughput.length, 7);
    const p = panel(model, 'throughput');
    assert.equal(p.max, 2.5, 'a round axis top above the 2.2 Gbit/s peak');
    samples().forEach((s, i) => {
      const x = round1(xOf(model, (s.time - T0) / 1000));
      const y = round1(yOf(p, (s.throughputMbps ?? 0) / 1000));
      assert.equal(throughput[i], `${i === 0 ? 'M' : 'L'}${x},${y}`);
    });
    const ram = pathOf(svg, 'remaining-ram');
    const remaining = panel(model, 'remaining');
    assert.equal(remaining.max, 1000);
    assert.equal(ram[0], `M${round1(xOf(model, 2.5))},${round1(yOf(remaining, 600))}`);
    assert.equal(ram.at(-1), `L${round1(xOf(model, 8.5))},${round1(yOf(remaining, 120))}`);
    for (const key of ['dirty-rate', 'downtime-limit', 'expected-downtime', 'cpu-throttle'])
      assert.ok(pathOf(svg, key).length > 1, key);
    assert.ok(
      !svg.includes('data-series="remaining-disk"'),
      'no disk series when no sample has disk figures',
    );
  });

  it('breaks the dirty-rate line where QEMU had no figure yet', () => {
    const dirty = pathOf(renderMigrationSvg(input()), 'dirty-rate');
    assert.equal(dirty.length, 6, 'the first sample has no dirty rate');
    assert.ok(dirty[0]?.startsWith('M'));
    const model = migrationChartModel(input());
    assert.equal(dirty[0], `M${round1(xOf(model, 3.5))},${round1(yOf(panel(model, 'dirty rate'), 10))}`);
  });

  it('draws the remaining disk when the samples carry it', () => {
    const withDisk = samples().map((s, i) => ({ ...s, remainingDiskBytes: (300 - 40 * i) * MiB }));
    const svg = renderMigrationSvg(input({ samples: withDisk }));
    assert.equal(pathOf(svg, 'remaining-disk').length, 7);
  });

  it("steps the downtime limit from the plan's steps, counted from the start of sending", () => {
    const model = migrationChartModel(input());
    const p = panel(model, 'downtime');
    assert.equal(p.max, 200);
    const x = (t: number): string => round1(xOf(model, t)).toString();
    const y = (v: number): string => round1(yOf(p, v)).toString();
    assert.deepEqual(pathOf(renderMigrationSvg(input()), 'downtime-limit'), [
      `M${x(2)},${y(50)}`,
      `H${x(4)}`,
      `V${y(100)}`,
      `H${x(6)}`,
      `V${y(200)}`,
      `H${x(9.5)}`,
      `V${y(200)}`,
    ]);
  });

  it('prefers the downtime limit the samples recorded over the plan', () => {
    const recorded = samples().map((s, i) => ({ ...s, downtimeLimitMs: i < 4 ? 300 : 600 }));
    const model = migrationChartModel(input({ samples: recorded }));
    const limit = model.panels.flatMap((p) => p.series).find((s) => s.key === 'downtime-limit');
    assert.deepEqual(
      limit?.points.map(([, v]) => v),
      [300, 300, 300, 300, 600, 600, 600],
    );
  });

  it('puts a phase mark across the panels at each phase change', () => {
    const svg = renderMigrationSvg(input());
    const model = migrationChartModel(input());
    assert.deepEqual(markX(svg, 'setup'), [round1(xOf(model, 0))]);
    assert.deepEqual(markX(svg, 'precopy'), [round1(xOf(model, 2))]);
    assert.deepEqual(markX(svg, 'pass'), [round1(xOf(model, 4.5)), round1(xOf(model, 6.5))]);
    assert.deepEqual(markX(svg, 'postcopy'), [round1(xOf(model, 6))]);
    assert.deepEqual(markX(svg, 'handover'), [round1(xOf(model, 9))]);
    assert.deepEqual(markX(svg, 'end'), [round1(xOf(model, 9.5))]);
    assert.equal(round1(xOf(model, 9.5)), model.plotLeft + model.plotWidth, 'the end is the right edge');
  });

  it("puts the report's headline figures in the title", () => {
    const svg = renderMigrationSvg(input());
    assert.match(svg, /data-role="title">migration m-1 · web-1 · host-a → host-b</);
    assert.match(
      svg,
      /data-role="headline">completed · native \+ TLS · 2\.00 GiB in 7\.25 s = 2\.37 Gbit\/s · downtime 42 ms · 3 pass\(es\) · throttle up to 20% · post-copy at 6 s · guest ok</,
    );
  });

  it('draws a migration without samples or report (a destination, or one that failed early)', () => {
    const svg = renderMigrationSvg(
      input({
        samples: [],
        report: null,
        finishedAt: T0 + 1200,
        events: [
          { time: T0, from: null, to: 'preparing', message: null },
          { time: T0 + 1200, from: 'preparing', to: 'failed', message: 'destination refused' },
        ],
      }),
    );
    assert.match(svg, /data-role="headline">failed</);
    assert.ok(!svg.includes('<path data-series'));
    assert.deepEqual(markX(svg, 'end').length, 1);
    assert.ok(!svg.includes('NaN') && !svg.includes('Infinity'));
  });

  it('escapes names so the SVG stays well-formed', () => {
    assert.equal(escapeXml(`a<b>&"c'`), 'a&lt;b&gt;&amp;&quot;c&apos;');
    const svg = renderMigrationSvg(input({ vm: 'vm<&>' }));
    assert.ok(svg.includes('vm&lt;&amp;&gt;'));
    assert.ok(!/&(?!(lt|gt|amp|quot|apos);)/.test(svg), 'no bare ampersand');
    assert.equal(svg.match(/<g /g)?.length, svg.match(/<\/g>/g)?.length);
  });

  it('wraps the chart and the state history in an HTML page', () => {
    const html = renderMigrationHtml(input());
    assert.match(html, /^<!doctype html>/);
    assert.ok(html.includes('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.match(
      html,
      /<tr><td>6\.00 s<\/td><td>migrating → postcopy<\/td><td>switched to post-copy<\/td><\/tr>/,
    );
  });

  it('rounds axis tops to 1, 2, 2.5 or 5 times a power of ten', () => {
    assert.deepEqual(
      [0, 0.3, 1, 1.01, 2.2, 4, 7, 10, 640, 1000].map(niceCeiling),
      [1, 0.5, 1, 2, 2.5, 5, 10, 10, 1000, 1000],
    );
  });
});
