import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CalibrationResult } from './calibration.js';
import {
  figuresFromCalibration,
  figuresFromMigrations,
  transportFiguresFor,
  type PastMigration,
} from './figures.js';

const DAY = 24 * 3600 * 1000;
const T0 = Date.parse('2026-11-20T10:00:00Z');
const B = 'https://198.18.0.2:7700';

function past(o: Partial<PastMigration>): PastMigration {
  return {
    peer: B,
    state: 'completed',
    transport: 'tunnelled',
    tls: true,
    tunnel: 'multi',
    bandwidthMiBps: 0,
    gbps: 1,
    finishedAt: T0,
    ...o,
  };
}

function calibration(o: Partial<CalibrationResult>): CalibrationResult {
  return {
    id: 'c1',
    peer: B,
    memoryMiB: 256,
    startedAt: T0,
    finishedAt: T0,
    date: '2026-11-20',
    runs: [],
    ...o,
  };
}

describe('figuresFromMigrations', () => {
  it('takes the median of the newest completed, uncapped migrations per secure transport to that peer', () => {
    const migrations = [
      past({ gbps: 1, finishedAt: T0 }),
      past({ gbps: 3, finishedAt: T0 + DAY }),
      past({ gbps: 2, finishedAt: T0 + 2 * DAY }),
      past({ transport: 'native', gbps: 2.5, finishedAt: T0 + 3 * DAY }),
      // none of these says anything about a secure transport to B at full speed:
      past({ gbps: 50, state: 'failed' }),
      past({ gbps: 50, bandwidthMiBps: 100 }),
      past({ gbps: 50, tunnel: 'naive' }),
      past({ gbps: 50, transport: 'native', tls: false }),
      past({ gbps: 50, peer: 'https://198.18.0.3:7700' }),
    ];
    assert.deepEqual(figuresFromMigrations(B, migrations), {
      nativeTls: { gbps: 2.5, date: '2026-11-23', migrations: 1 },
      tunnelled: { gbps: 2, date: '2026-11-22', migrations: 3 },
    });
  });

  it('keeps only the 5 newest per transport', () => {
    const migrations = [50, 50, 50, 1, 1, 1, 1, 1].map((gbps, i) => past({ gbps, finishedAt: T0 + i * DAY }));
    assert.equal(figuresFromMigrations(B, migrations).tunnelled?.gbps, 1);
  });
});

describe('figuresFromCalibration and transportFiguresFor', () => {
  const run = (transport: 'nativeTls' | 'tunnelled', gbps: number, status = 'completed') => ({
    transport,
    migrationId: 'm',
    status,
    gbps,
    seconds: 1,
    bytes: 1,
    cpuSecondsPerGiB: 1.5,
  });

  it("gives each transport that completed the median of its runs, with the calibration's date", () => {
    const c = calibration({
      runs: [run('tunnelled', 3), run('tunnelled', 3.4), run('nativeTls', 0, 'failed')],
    });
    assert.deepEqual(figuresFromCalibration(c), {
      tunnelled: { gbps: 3.2, cpuSecondsPerGiB: 1.5, date: '2026-11-20', migrations: 2 },
    });
  });

  it("uses the peer's newest calibration that measured something, and the past migrations beside it", () => {
    const older = calibration({ id: 'old', finishedAt: T0, runs: [run('nativeTls', 2)] });
    const failed = calibration({
      id: 'new',
      finishedAt: T0 + 2 * DAY,
      runs: [run('tunnelled', 0, 'failed')],
    });
    const other = calibration({
      peer: 'https://c:7700',
      finishedAt: T0 + 3 * DAY,
      runs: [run('nativeTls', 9)],
    });
    const f = transportFiguresFor(B, [older, failed, other], [past({ gbps: 4 })]);
    assert.deepEqual(f, {
      calibration: { nativeTls: { gbps: 2, cpuSecondsPerGiB: 1.5, date: '2026-11-20', migrations: 1 } },
      migrations: { tunnelled: { gbps: 4, date: '2026-11-20', migrations: 1 } },
    });
    assert.deepEqual(transportFiguresFor('https://nobody:7700', [older], []), {});
  });
});
