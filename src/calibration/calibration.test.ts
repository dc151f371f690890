import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MigrationOverrides } from '../policy/index.js';
import { CALIBRATION_VM_PREFIX, calibrate, type CalibrationDeps } from './calibration.js';

const GiB = 1024 ** 3;

/** A host whose trial migrations move 1 GiB at the given Gbit/s per transport, costing the given CPU seconds. */
function fakeHost(
  speeds: { native: number | Error; tunnelled: number | Error },
  cpu: { native: number; tunnelled: number },
): CalibrationDeps & { calls: string[] } {
  const calls: string[] = [];
  let cpuSeconds = 10;
  let n = 0;
  return {
    calls,
    startVm: (name, memoryMiB) => {
      calls.push(`start ${name} ${memoryMiB}`);
      return Promise.resolve();
    },
    stopVm: (name) => {
      calls.push(`stop ${name}`);
      return Promise.resolve();
    },
    trialMigration: (vm, to, overrides: MigrationOverrides) => {
      const transport = overrides.transport === 'tunnelled' ? 'tunnelled' : 'native';
      calls.push(
        `trial ${vm} ${to} ${transport} tls=${String(overrides.tls)} postCopy=${String(overrides.postCopy)}`,
      );
      const speed = speeds[transport];
      if (speed instanceof Error) return Promise.reject(speed);
      cpuSeconds += cpu[transport];
      n += 1;
      return Promise.resolve({
        id: `m-${n}`,
        status: 'completed',
        gbps: speed,
        seconds: (8 * GiB) / (speed * 1e9),
        bytes: GiB,
        error: undefined,
      });
    },
    cpuSeconds: () => Promise.resolve(cpuSeconds),
    now: () => Date.parse('2026-11-30T12:00:00Z'),
    newId: () => 'c0ffee00-1234',
  };
}

describe('calibrate', () => {
  it('migrates one throwaway guest through each secure transport, alternating, and measures CPU per GiB', async () => {
    const host = fakeHost({ native: 2.6, tunnelled: 3.2 }, { native: 2.5, tunnelled: 1.5 });
    const r = await calibrate('https://198.18.0.2:7700', { memoryMiB: 256, runs: 2 }, host);
    const vm = `${CALIBRATION_VM_PREFIX}c0ffee00`;
    assert.deepEqual(host.calls, [
      `start ${vm} 256`,
      `trial ${vm} https://198.18.0.2:7700 native tls=true postCopy=false`,
      `trial ${vm} https://198.18.0.2:7700 tunnelled tls=undefined postCopy=false`,
      `trial ${vm} https://198.18.0.2:7700 native tls=true postCopy=false`,
      `trial ${vm} https://198.18.0.2:7700 tunnelled tls=undefined postCopy=false`,
      `stop ${vm}`,
    ]);
    assert.equal(r.date, '2026-11-30');
    assert.deepEqual(
      r.runs.map((x) => [x.transport, x.gbps, x.cpuSecondsPerGiB, x.migrationId]),
      [
        ['nativeTls', 2.6, 2.5, 'm-1'],
        ['tunnelled', 3.2, 1.5, 'm-2'],
        ['nativeTls', 2.6, 2.5, 'm-3'],
        ['tunnelled', 3.2, 1.5, 'm-4'],
      ],
    );
  });

  it('records a transport that fails with its error, measures the other, and still stops the guest', async () => {
    const host = fakeHost(
      { native: new Error('QEMU TLS credentials missing on host-b'), tunnelled: 3 },
      { native: 0, tunnelled: 1 },
    );
    const r = await calibrate('https://b:7700', { memoryMiB: 128, runs: 1 }, host);
    assert.deepEqual(
      r.runs.map((x) => [x.transport, x.status, x.error]),
      [
        ['nativeTls', 'failed', 'QEMU TLS credentials missing on host-b'],
        ['tunnelled', 'completed', undefined],
      ],
    );
    assert.equal(host.calls.at(-1), `stop ${CALIBRATION_VM_PREFIX}c0ffee00`);
  });
});
