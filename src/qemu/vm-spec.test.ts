import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { RAM_BACKEND_ID, buildQemuArgv, ramSizeKiB, validateVmSpec } from './vm-spec.js';

const base = {
  name: 'web-1',
  memoryMiB: 512,
  vcpus: 2,
  kernel: '/opt/guest.elf',
  append: 'mem=256 dirty=16',
};

function valueAfter(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? ''] : []));
}

describe('VM spec to QEMU argv', () => {
  it('builds a TCG command line with monitor, serial log and named RAM backend', () => {
    const argv = buildQemuArgv(validateVmSpec(base), { accel: 'tcg', runDir: '/run/vmf/web-1' });
    assert.deepEqual(valueAfter(argv, '-accel'), ['tcg,tb-size=128']);
    assert.deepEqual(valueAfter(argv, '-machine'), [`pc,memory-backend=${RAM_BACKEND_ID}`]);
    assert.deepEqual(valueAfter(argv, '-object'), [`memory-backend-ram,id=${RAM_BACKEND_ID},size=524296K`]);
    assert.deepEqual(valueAfter(argv, '-m'), ['524296K']);
    assert.deepEqual(valueAfter(argv, '-smp'), ['2']);
    assert.deepEqual(valueAfter(argv, '-append'), ['mem=256 dirty=16']);
    assert.ok(
      valueAfter(argv, '-chardev').includes('socket,id=qmp0,path=/run/vmf/web-1/qmp.sock,server=on,wait=off'),
    );
    assert.ok(valueAfter(argv, '-chardev').includes('file,id=serial0,path=/run/vmf/web-1/serial.log'));
    assert.ok(!argv.includes('-incoming'));
    assert.ok(!argv.includes('-S'));
  });

  it('adds -incoming defer for a destination and a shared file backend when asked', () => {
    const spec = validateVmSpec({
      ...base,
      memoryBackend: { kind: 'file', path: '/dev/shm/web-1.ram', share: true },
    });
    const argv = buildQemuArgv(spec, { accel: 'kvm', runDir: '/r', incoming: 'defer' });
    assert.deepEqual(valueAfter(argv, '-incoming'), ['defer']);
    assert.deepEqual(valueAfter(argv, '-accel'), ['kvm']);
    assert.deepEqual(valueAfter(argv, '-object'), [
      `memory-backend-file,id=${RAM_BACKEND_ID},size=524288K,mem-path=/dev/shm/web-1.ram,share=on`,
    ]);
  });

  it('pads TCG guest RAM off 256 KiB multiples (QEMU < 9.0 TCG dirty-tracking bug), not KVM', () => {
    assert.equal(ramSizeKiB(256, 'tcg') % 256, 8);
    assert.equal(ramSizeKiB(256, 'kvm'), 256 * 1024);
  });

  it('attaches disks as virtio-blk over blockdev nodes', () => {
    const spec = validateVmSpec({ ...base, disks: [{ path: '/var/lib/vmf/web-1.qcow2', format: 'qcow2' }] });
    const argv = buildQemuArgv(spec, { accel: 'tcg', runDir: '/r' });
    assert.deepEqual(valueAfter(argv, '-blockdev'), [
      'driver=file,node-name=file0,filename=/var/lib/vmf/web-1.qcow2',
      'driver=qcow2,node-name=disk0,file=file0',
    ]);
    assert.deepEqual(valueAfter(argv, '-device'), ['virtio-blk-pci,drive=disk0,id=virtio-disk0']);
  });

  it('rejects bad specs naming the field and the value', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base, name: '../etc' }, /invalid VM name "\.\.\/etc"/],
      [{ ...base, memoryMiB: 8 }, /memoryMiB must be an integer from 16.*got 8/],
      [{ ...base, vcpus: 1.5 }, /vcpus must be an integer.*got 1\.5/],
      [{ ...base, kernel: 'guest.elf' }, /kernel must be an absolute path, got "guest\.elf"/],
      [{ ...base, disks: [{ path: '/a,b', format: 'raw' }] }, /disks\[0\]\.path/],
      [
        { ...base, disks: [{ path: '/a', format: 'vmdk' }] },
        /disks\[0\]\.format must be raw or qcow2, got "vmdk"/,
      ],
      [{ ...base, memoryBackend: { kind: 'hugepages' } }, /memoryBackend/],
    ];
    for (const [input, message] of cases) {
      assert.throws(
        () => validateVmSpec(input),
        (err: unknown) => err instanceof UsageError && message.test(err.message),
      );
    }
  });
});
