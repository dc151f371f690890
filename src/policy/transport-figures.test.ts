import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  benchmarkedDefault,
  chooseFigures,
  fasterByFigures,
  type BenchmarkedDefault,
} from './transport-figures.js';

const TABLE: BenchmarkedDefault[] = [
  { qemu: '9.1', transport: 'native', evidence: 'bench on 9.1' },
  { qemu: '7.2', transport: 'tunnelled', evidence: 'bench on 7.2' },
];

describe('benchmarkedDefault', () => {
  it("takes the version's own row, else the newest benchmarked one below it, else the oldest", () => {
    assert.deepEqual(benchmarkedDefault('7.2.22', TABLE), { row: TABLE[1], match: 'QEMU 7.2.22' });
    assert.deepEqual(benchmarkedDefault('8.2.0', TABLE), {
      row: TABLE[1],
      match: 'QEMU 8.2.0, nearest benchmarked version 7.2',
    });
    assert.equal(benchmarkedDefault('10.0.0', TABLE).row, TABLE[0]);
    assert.deepEqual(benchmarkedDefault('6.2.0', TABLE), {
      row: TABLE[1],
      match: 'QEMU 6.2.0, nearest benchmarked version 7.2',
    });
    assert.equal(
      benchmarkedDefault(undefined, TABLE).match,
      'QEMU version unknown: the default benchmarked on QEMU 7.2',
    );
  });

  it('has a row for the QEMU the project runs on (Debian 12: 7.2)', () => {
    assert.equal(benchmarkedDefault('7.2.22').match, 'QEMU 7.2.22');
  });
});

describe('chooseFigures and fasterByFigures', () => {
  const f = (gbps: number, date = '2026-11-30') => ({ gbps, date, migrations: 1 });

  it('ignores figures without a usable throughput', () => {
    const chosen = chooseFigures({ calibration: { nativeTls: f(Number.NaN), tunnelled: f(0) } });
    assert.deepEqual(chosen, {});
    assert.equal(fasterByFigures(chosen), undefined);
  });

  it('prefers one origin with both transports over mixing origins', () => {
    const chosen = chooseFigures({
      calibration: { tunnelled: f(3) },
      migrations: { tunnelled: f(1), nativeTls: f(2) },
    });
    assert.deepEqual(
      [chosen.tunnelled?.gbps, chosen.tunnelled?.origin, chosen.nativeTls?.origin],
      [1, 'migrations', 'migrations'],
    );
    const mixed = chooseFigures({ calibration: { tunnelled: f(3) }, migrations: { nativeTls: f(2) } });
    assert.deepEqual([mixed.tunnelled?.origin, mixed.nativeTls?.origin], ['calibration', 'migrations']);
    assert.equal(fasterByFigures(mixed)?.transport, 'tunnelled');
  });

  it('breaks a tie on source CPU per GiB, else keeps native TLS (no relay processes)', () => {
    const cheapTunnel = {
      calibration: {
        nativeTls: { ...f(2), cpuSecondsPerGiB: 2 },
        tunnelled: { ...f(2), cpuSecondsPerGiB: 1 },
      },
    };
    assert.equal(fasterByFigures(chooseFigures(cheapTunnel))?.transport, 'tunnelled');
    const unknown = { calibration: { nativeTls: f(2), tunnelled: f(2) } };
    assert.equal(fasterByFigures(chooseFigures(unknown))?.transport, 'nativeTls');
  });
});
