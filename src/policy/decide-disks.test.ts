import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PlanError } from '../errors.js';
import { decideDisks, type DiskDecisionInput } from './decide-disks.js';
import type { DestinationDiskView, SourceDisk } from './types.js';

const GiB = 1024 ** 3;
const base = { format: 'qcow2', virtualSize: GiB, sizeBytes: 200_000, fingerprint: 'f'.repeat(64) } as const;

const local: SourceDisk = {
  disk: 0,
  storage: 'local',
  path: 'web-1/disk.qcow2',
  format: 'qcow2',
  virtualSize: GiB,
};
const layered: SourceDisk = {
  ...local,
  disk: 1,
  path: 'web-1/data.qcow2',
  allocatedBytes: 64 << 20,
  backing: { name: '../_base/debian.qcow2', format: 'qcow2', identity: base },
};
const shared: SourceDisk = {
  disk: 2,
  storage: 'shared',
  path: '/nfs/web-1.raw',
  format: 'raw',
  virtualSize: GiB,
};

const absent = (disk: number, more: Partial<DestinationDiskView> = {}): DestinationDiskView => ({
  disk,
  exists: false,
  sameFile: false,
  why: 'no file at /b/instances/web-1/disk.qcow2',
  ...more,
});
const same = (disk: number): DestinationDiskView => ({
  disk,
  exists: true,
  sameFile: true,
  why: "the source's probe file is in its folder",
});

function decide(more: Partial<DiskDecisionInput>): ReturnType<typeof decideDisks> {
  return decideDisks({
    mode: 'all',
    modeReason: { message: 'asked for with --block (override)' },
    incremental: true,
    disks: [local],
    destination: [absent(0)],
    destinationHost: 'host-b',
    ...more,
  });
}

describe('how each disk crosses', () => {
  it('a live migration keeps shared disks and refuses a local one, naming it', () => {
    assert.deepEqual(decide({ mode: undefined, disks: [shared], destination: [] }).value, [
      {
        disk: 2,
        action: 'shared',
        format: 'raw',
        virtualSize: GiB,
        reason: 'shared storage: the destination opens the same file',
      },
    ]);
    assert.throws(
      () => decide({ mode: undefined, disks: [shared, local], destination: [] }),
      (err: unknown) =>
        err instanceof PlanError &&
        err.code === 'VMF_ERR_PLAN' &&
        err.message ===
          "disk 0 (web-1/disk.qcow2, local) is on this host's own storage: a live migration would leave it behind" &&
        /--block/.test(err.hint ?? ''),
    );
  });

  it('--block copies a local disk whole, and keeps a shared one that is the same file there', () => {
    const d = decide({ disks: [local, shared], destination: [absent(0), same(2)] });
    assert.deepEqual(
      d.value.map((p) => [p.disk, p.action, p.sync]),
      [
        [0, 'copy', 'full'],
        [2, 'shared', undefined],
      ],
    );
    assert.deepEqual(
      d.reasons.map((r) => [r.option ?? r.capability, r.message]),
      [
        [undefined, 'block migration (all): asked for with --block (override)'],
        ['destination.disks[0]', 'disk 0 (web-1/disk.qcow2, local): copied whole'],
        [
          'destination.disks[2]',
          "disk 2 (/nfs/web-1.raw, shared): not copied: host-b sees the same file (the source's probe file is in its folder)",
        ],
      ],
    );
  });

  it('--block refuses a shared disk the destination does not see, and never overwrites a file there', () => {
    assert.throws(
      () => decide({ disks: [shared], destination: [absent(2)] }),
      /^PlanError: disk 2 \(\/nfs\/web-1\.raw, shared\) is not the same file on host-b: no file at/,
    );
    assert.throws(
      () => decide({ destination: [same(0)] }),
      (err: unknown) =>
        err instanceof PlanError &&
        /a file is already at its path on host-b and vmferry never overwrites one/.test(err.message) &&
        /use --block auto/.test(err.hint ?? ''),
    );
  });

  it('--block auto keeps what the destination sees as the same file, copies the rest', () => {
    const d = decide({ mode: 'auto', disks: [local, shared], destination: [same(0), absent(2)] });
    assert.deepEqual(
      d.value.map((p) => [p.disk, p.action, p.sync]),
      [
        [0, 'shared', undefined],
        [2, 'copy', 'full'],
      ],
    );
    assert.match(d.reasons[2]!.message, /disk 2 .*: host-b does not see it \(no file at .*\); copied whole/);
  });

  it('copies only the top image when the destination has the same backing image and nova allows it', () => {
    const present = absent(1, {
      backing: { present: true, why: 'same identity at /b/instances/_base/debian.qcow2' },
    });
    const top = decide({ disks: [layered], destination: [present] });
    assert.deepEqual(top.value[0], {
      disk: 1,
      action: 'copy',
      format: 'qcow2',
      virtualSize: GiB,
      sync: 'top',
      copyBytes: 64 << 20,
      backing: layered.backing,
      reason:
        'top image only (VIR_MIGRATE_NON_SHARED_INC): host-b has its backing image ../_base/debian.qcow2 (same identity at /b/instances/_base/debian.qcow2)',
    });
    const missing = absent(1, {
      backing: { present: false, why: 'different content in its first or last MiB' },
    });
    assert.deepEqual(
      [
        decide({ disks: [layered], destination: [missing] }).value[0]?.sync,
        decide({ disks: [layered], destination: [missing] }).value[0]?.copyBytes,
      ],
      ['full', (64 << 20) + 200_000],
      'a whole copy moves the backing image too',
    );
    assert.match(
      decide({ disks: [layered], destination: [missing] }).value[0]!.reason,
      /copied whole, its backing image \.\.\/_base\/debian\.qcow2 included: different content in its first or last MiB/,
    );
    assert.match(
      decide({ disks: [layered], destination: [present], incremental: false }).value[0]!.reason,
      /nova's block flags lack VIR_MIGRATE_NON_SHARED_INC/,
    );
  });
});
