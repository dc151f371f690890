import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RAM_BACKEND_ID, buildQemuArgv, deviceIds } from './qemu-argv.js';
import { ramSizeKiB, validateVmSpec, type VmSpec } from './vm-spec.js';

const spec: VmSpec = validateVmSpec({
  name: 'web-1',
  memoryMiB: 512,
  vcpus: 2,
  machine: 'pc-i440fx-7.2',
  cpu: 'qemu64',
  boot: { kernel: '/srv/images/vmlinuz', initrd: '/srv/images/initrd.img', append: 'console=ttyS0' },
  disks: [
    { path: '/srv/shared/web-1.raw', format: 'raw', storage: 'shared' },
    { path: '/srv/shared/web-1-data.qcow2', format: 'qcow2', storage: 'shared', readonly: true },
  ],
  nics: [
    { bridge: 'br0', mac: '52:54:00:12:34:56' },
    { bridge: 'br1', mac: '52:54:00:65:43:21' },
  ],
});

function valuesAfter(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? ''] : []));
}

/** What the guest sees: machine, CPU, memory and every -device, without host paths and tap names. */
function deviceTree(argv: string[]): string[] {
  return ['-machine', '-cpu', '-m', '-smp', '-device'].flatMap((flag) =>
    valuesAfter(argv, flag).map((v) => `${flag} ${v}`),
  );
}

describe('VM spec to QEMU argv', () => {
  it('builds a TCG command line with the stored machine and CPU, monitor, serial log and named RAM backend', () => {
    const argv = buildQemuArgv(spec, { accel: 'tcg', runDir: '/run/vmf/web-1', taps: ['tapa', 'tapb'] });
    assert.deepEqual(valuesAfter(argv, '-accel'), ['tcg,tb-size=128']);
    assert.deepEqual(valuesAfter(argv, '-machine'), [`pc-i440fx-7.2,memory-backend=${RAM_BACKEND_ID}`]);
    assert.deepEqual(valuesAfter(argv, '-cpu'), ['qemu64']);
    assert.deepEqual(valuesAfter(argv, '-object'), [`memory-backend-ram,id=${RAM_BACKEND_ID},size=524296K`]);
    assert.deepEqual(valuesAfter(argv, '-m'), ['524296K']);
    assert.deepEqual(valuesAfter(argv, '-smp'), ['2']);
    assert.deepEqual(valuesAfter(argv, '-kernel'), ['/srv/images/vmlinuz']);
    assert.deepEqual(valuesAfter(argv, '-initrd'), ['/srv/images/initrd.img']);
    assert.deepEqual(valuesAfter(argv, '-append'), ['console=ttyS0']);
    assert.ok(
      valuesAfter(argv, '-chardev').includes(
        'socket,id=qmp0,path=/run/vmf/web-1/qmp.sock,server=on,wait=off',
      ),
    );
    assert.ok(valuesAfter(argv, '-chardev').includes('file,id=serial0,path=/run/vmf/web-1/serial.log'));
    assert.ok(!argv.includes('-incoming'));
    assert.ok(!argv.includes('-S'));
  });

  it('gives disks and NICs ids and PCI slots from their place in the spec', () => {
    const argv = buildQemuArgv(spec, { accel: 'tcg', runDir: '/r', taps: ['vmftap0', 'vmftap1'] });
    assert.deepEqual(valuesAfter(argv, '-blockdev'), [
      'driver=file,node-name=vmf-drive0-file,filename=/srv/shared/web-1.raw',
      'driver=raw,node-name=vmf-drive0,file=vmf-drive0-file',
      'driver=file,node-name=vmf-drive1-file,filename=/srv/shared/web-1-data.qcow2,read-only=on',
      'driver=qcow2,node-name=vmf-drive1,file=vmf-drive1-file,read-only=on',
    ]);
    assert.deepEqual(valuesAfter(argv, '-netdev'), [
      'tap,id=vmf-net0,ifname=vmftap0,script=no,downscript=no',
      'tap,id=vmf-net1,ifname=vmftap1,script=no,downscript=no',
    ]);
    assert.deepEqual(valuesAfter(argv, '-device'), [
      'virtio-blk-pci,drive=vmf-drive0,id=vmf-disk0,bus=pci.0,addr=0x4',
      'virtio-blk-pci,drive=vmf-drive1,id=vmf-disk1,bus=pci.0,addr=0x5',
      'virtio-net-pci,netdev=vmf-net0,id=vmf-nic0,mac=52:54:00:12:34:56,bus=pci.0,addr=0xc,romfile=',
      'virtio-net-pci,netdev=vmf-net1,id=vmf-nic1,mac=52:54:00:65:43:21,bus=pci.0,addr=0xd,romfile=',
    ]);
    assert.deepEqual(deviceIds('nic', 7).slot, '0x13', 'the last NIC stays below the ICH9 functions at 0x1f');
  });

  it("opens a local disk under this host's instances_path, and refuses one without it", () => {
    const local = validateVmSpec({
      ...spec,
      disks: [{ path: 'web-1/disk.qcow2', format: 'qcow2', storage: 'local' }],
      nics: [],
    });
    assert.deepEqual(
      valuesAfter(
        buildQemuArgv(local, { accel: 'tcg', runDir: '/r', instancesPath: '/b/instances' }),
        '-blockdev',
      )[0],
      'driver=file,node-name=vmf-drive0-file,filename=/b/instances/web-1/disk.qcow2',
    );
    assert.throws(
      () => buildQemuArgv(local, { accel: 'tcg', runDir: '/r' }),
      /VM web-1: disks\[0\] is local but no instances_path was given/,
    );
  });

  it('builds the same device tree on both ends of a migration (only host paths and tap names differ)', () => {
    const source = buildQemuArgv(spec, {
      accel: 'tcg',
      runDir: '/a/vms/web-1',
      taps: ['vmfaaaa0', 'vmfaaaa1'],
    });
    const destination = buildQemuArgv(structuredClone(spec), {
      accel: 'tcg',
      runDir: '/b/vms/web-1',
      taps: ['vmfbbbb0', 'vmfbbbb1'],
      incoming: 'defer',
      paused: true,
    });
    assert.deepEqual(deviceTree(destination), deviceTree(source));
    const hostSide = (argv: string[]): string[] =>
      argv.map((a) =>
        a
          .replaceAll('/a/vms', 'RUN')
          .replaceAll('/b/vms', 'RUN')
          .replace(/vmf(aaaa|bbbb)/, 'TAP'),
      );
    assert.deepEqual(hostSide(destination).slice(0, source.length), hostSide(source));
    assert.deepEqual(destination.slice(source.length), ['-S', '-incoming', 'defer']);
  });

  it('puts devices on pcie.0 for a q35 machine and boots a disk through SeaBIOS with bootindex', () => {
    const q35 = validateVmSpec({
      ...spec,
      machine: 'pc-q35-7.2',
      boot: { firmware: 'bios', disk: 1 },
      nics: [],
    });
    const argv = buildQemuArgv(q35, { accel: 'kvm', runDir: '/r' });
    assert.ok(!argv.includes('-kernel'));
    assert.deepEqual(valuesAfter(argv, '-accel'), ['kvm']);
    assert.deepEqual(valuesAfter(argv, '-device'), [
      'virtio-blk-pci,drive=vmf-drive0,id=vmf-disk0,bus=pcie.0,addr=0x4',
      'virtio-blk-pci,drive=vmf-drive1,id=vmf-disk1,bus=pcie.0,addr=0x5,bootindex=1',
    ]);
  });

  it('adds -incoming defer for a destination and a shared file backend when asked', () => {
    const withFile = validateVmSpec({
      ...spec,
      nics: [],
      memoryBackend: { kind: 'file', path: '/dev/shm/web-1.ram', share: true },
    });
    const argv = buildQemuArgv(withFile, { accel: 'kvm', runDir: '/r', incoming: 'defer' });
    assert.deepEqual(valuesAfter(argv, '-incoming'), ['defer']);
    assert.deepEqual(valuesAfter(argv, '-object'), [
      `memory-backend-file,id=${RAM_BACKEND_ID},size=524288K,mem-path=/dev/shm/web-1.ram,share=on`,
    ]);
  });

  it('refuses to build a NIC without its tap device', () => {
    assert.throws(() => buildQemuArgv(spec, { accel: 'tcg', runDir: '/r', taps: ['only-one'] }), /nics\[1\]/);
  });

  it('pads TCG guest RAM off 256 KiB multiples (QEMU < 9.0 TCG dirty-tracking bug), not KVM', () => {
    assert.equal(ramSizeKiB(256, 'tcg') % 256, 8);
    assert.equal(ramSizeKiB(256, 'kvm'), 256 * 1024);
  });
});
