import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UsageError } from '../../errors.js';
import { guestKernelPath } from '../../guest/index.js';
import { specFromFlags } from './vm-spec-flags.js';

const dir = mkdtempSync(join(tmpdir(), 'vmf-spec-flags-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('vmferry vm start: the spec from --spec or flags', () => {
  it('reads --spec FILE, the name from the command', () => {
    const file = join(dir, 'web-1.json');
    writeFileSync(
      file,
      JSON.stringify({ memoryMiB: 256, vcpus: 1, boot: { kernel: '/k' }, nics: [{ bridge: 'br0' }] }),
    );
    const spec = specFromFlags('web-1', { spec: file });
    assert.equal(spec.name, 'web-1');
    assert.deepEqual(spec.nics, [{ bridge: 'br0' }]);
    assert.throws(
      () => specFromFlags('web-1', { spec: file, memory: '512' }),
      /--spec describes the whole VM: drop --memory/,
    );
  });

  it('builds the same spec from flags: kernel, initrd, disks and NICs', () => {
    const spec = specFromFlags('web-1', {
      memory: '256',
      vcpus: '2',
      machine: 'q35',
      kernel: '/srv/vmlinuz',
      initrd: '/srv/initrd.img',
      append: 'console=ttyS0',
      disk: [
        '/srv/shared/web-1.raw,format=raw,storage=shared',
        'path=/srv/ro.qcow2,format=qcow2,storage=shared,readonly',
      ],
      nic: ['br0', 'bridge=br1,mac=52:54:00:00:00:01'],
    });
    assert.deepEqual(spec, {
      name: 'web-1',
      memoryMiB: 256,
      vcpus: 2,
      machine: 'q35',
      boot: { kernel: '/srv/vmlinuz', initrd: '/srv/initrd.img', append: 'console=ttyS0' },
      disks: [
        { path: '/srv/shared/web-1.raw', format: 'raw', storage: 'shared' },
        { path: '/srv/ro.qcow2', format: 'qcow2', storage: 'shared', readonly: true },
      ],
      nics: [{ bridge: 'br0' }, { bridge: 'br1', mac: '52:54:00:00:00:01' }],
    });
  });

  it('boots a disk with --boot-disk, and the self-verifying guest by default', () => {
    const disk = specFromFlags('d', {
      memory: '512',
      bootDisk: '0',
      disk: ['/srv/shared/d.qcow2,format=qcow2,storage=shared'],
    });
    assert.deepEqual(disk.boot, { firmware: 'bios', disk: 0 });
    const guest = specFromFlags('g', { workloadMib: '64', dirtyMibps: '8' });
    assert.deepEqual(guest.boot, { kernel: guestKernelPath(), append: 'mem=64 dirty=8' });
    assert.equal(guest.memoryMiB, 96);
  });

  it('names the flag of bad input', () => {
    const refused = (flags: Parameters<typeof specFromFlags>[1], message: RegExp): void =>
      assert.throws(
        () => specFromFlags('web-1', flags),
        (e: unknown) => e instanceof UsageError && message.test(e.message),
      );
    refused(
      { memory: '256', kernel: '/k', nic: ['bridge=br0,model=e1000'] },
      /--nic "bridge=br0,model=e1000": unknown key "model"/,
    );
    refused(
      { memory: '256', kernel: '/k', disk: ['/a.raw,format=vmdk,storage=shared'] },
      /disks\[0\]\.format must be "raw" or "qcow2", got "vmdk"/,
    );
    refused(
      { memory: '256', kernel: '/k', disk: ['/a.raw,format=raw,storage=local'] },
      /disks\[0\]\.path must be a path relative to instances_path.*, got "\/a\.raw"/,
    );
    refused({ kernel: '/k' }, /--memory is needed with --kernel/);
    refused({ memory: 'lots', kernel: '/k' }, /--memory must be a whole number, got "lots"/);
    refused({ append: 'x' }, /--initrd and --append go with --kernel/);
  });
});
