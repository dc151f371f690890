import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { processKind } from './proc-cpu.js';
import { cpuBreakdown, median, resultSvg, resultTable, summarize, type BenchRun } from './report.js';

const GiB = 1024 ** 3;

function run(transport: string, gbps: number, cpuSource = 1, cpuDestination = 2): BenchRun {
  return {
    transport,
    from: 'host-a',
    to: 'host-b',
    gbps,
    seconds: 1,
    bytes: GiB,
    downtimeMs: 10,
    channels: 4,
    tls: true,
    cpuSourceSeconds: cpuSource,
    cpuDestinationSeconds: cpuDestination,
    cpuSourceByKind: { qemu: cpuSource / 2, relay: cpuSource / 2 },
    cpuDestinationByKind: { qemu: cpuDestination },
  };
}

describe('benchmark report', () => {
  it('takes medians of odd and even counts', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });

  it('summarizes runs: median, range and CPU seconds per GiB per side', () => {
    const s = summarize('tunnelled', [
      run('tunnelled', 4, 2, 3),
      run('tunnelled', 6, 4, 5),
      run('tunnelled', 5, 3, 4),
    ]);
    assert.equal(s.gbps, 5);
    assert.equal(s.minGbps, 4);
    assert.equal(s.maxGbps, 6);
    assert.equal(s.cpuSourcePerGiB, 3);
    assert.equal(s.cpuDestinationPerGiB, 4);
    assert.deepEqual(s.cpuSourcePerGiBByKind, { qemu: 1.5, relay: 1.5 });
    assert.deepEqual(s.cpuDestinationPerGiBByKind, { qemu: 4 });
    assert.equal(cpuBreakdown(s.cpuSourcePerGiBByKind), 'qemu 1.50 + relay 1.50');
    assert.equal(cpuBreakdown({}), '-');
  });

  it('tells QEMU, relay workers and agents apart by command line', () => {
    assert.equal(processKind('/usr/bin/qemu-system-x86_64\0-name\0g'), 'qemu');
    assert.equal(processKind('/usr/bin/node\0/x/dist/src/transport/relay-worker.js'), 'relay');
    assert.equal(processKind('/x/vmferry/native/build/vmferry-relay'), 'relay');
    assert.equal(processKind('node\0/x/bin/vmferry.js\0agent\0--name\0a'), 'agent');
    assert.equal(processKind('sleep\0' + '1'), 'other');
  });

  it('tables each transport against native, the link and the naive baseline', () => {
    const results = [
      summarize('native', [run('native', 8)]),
      summarize('tunnelled', [run('tunnelled', 6)]),
      summarize('naive-tunnel', [run('naive-tunnel', 1.5)]),
    ];
    const table = resultTable(results, 10, 'tcg');
    assert.match(table[0] ?? '', /^\| transport \| accel \| Gbit\/s/);
    assert.match(table[2] ?? '', /^\| native \| tcg \| 8\.00 \| 8\.00-8\.00 \| 100% \| 80% \| 5\.3x \|/);
    assert.match(table[3] ?? '', /^\| tunnelled \| tcg \| 6\.00 \| .* \| 75% \| 60% \| 4\.0x \|/);
    const svg = resultSvg(results, 'a <title>');
    assert.match(svg, /^<svg /);
    assert.match(svg, /a &lt;title&gt;/);
    assert.equal(svg.match(/<rect /g)?.length, 3);
  });
});
