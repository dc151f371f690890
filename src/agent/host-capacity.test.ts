import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostCapacity, parseMeminfo } from './host-capacity.js';

describe('host capacity', () => {
  it('reads MemTotal and MemAvailable', () => {
    const m = parseMeminfo(
      'MemTotal:       24684092 kB\nMemFree:        20685820 kB\nMemAvailable:   22695452 kB\n',
    );
    assert.equal(Math.round(m.totalMiB), 24106);
    assert.equal(Math.round(m.availableMiB), 22164);
  });

  it('names the missing line', () => {
    assert.throws(() => parseMeminfo('MemTotal: 1 kB\n'), /no MemAvailable line/);
  });

  it('takes off what running VMs have not touched yet, incoming migrations and the host reserve', () => {
    const c = hostCapacity({
      meminfo: { totalMiB: 16384, availableMiB: 10000 },
      running: [
        { memoryMiB: 4096, residentMiB: 1096 }, // 3000 still to come
        { memoryMiB: 1024, residentMiB: 1200 }, // more than its RAM (QEMU's own): nothing to come
      ],
      incoming: [{ memoryMiB: 2048 }],
      reservedHostMiB: 512,
    });
    assert.deepEqual(c, { totalMiB: 16384, availableMiB: 10000, reservedMiB: 5560, freeForVmsMiB: 4440 });
  });

  it('never reports less than nothing', () => {
    const c = hostCapacity({
      meminfo: { totalMiB: 4096, availableMiB: 300 },
      running: [],
      incoming: [],
      reservedHostMiB: 512,
    });
    assert.equal(c.freeForVmsMiB, 0);
  });
});
