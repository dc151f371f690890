import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthError, LimitError, UsageError } from '../errors.js';
import type { VmSpec } from '../qemu/index.js';
import { checkVmCapacity, confineVmFiles, isInside, parseDirList, vmFilesOf } from './vm-confinement.js';

describe('VM file confinement', () => {
  let root: string;
  let images: string;
  let disks: string;
  const dirs = (): { imageDirs: string[]; diskDirs: string[] } => ({
    imageDirs: [images],
    diskDirs: [disks],
  });
  const spec = (over: Partial<VmSpec> & { kernel?: string }): VmSpec => {
    const { kernel, ...rest } = over;
    return {
      name: 'web-1',
      memoryMiB: 64,
      vcpus: 1,
      machine: 'pc-i440fx-7.2',
      cpu: 'qemu64',
      boot: { kernel: kernel ?? join(images, 'guest.elf') },
      disks: [],
      nics: [],
      ...rest,
    };
  };
  const confine = (s: VmSpec, testMode = false) =>
    confineVmFiles(s, dirs(), { testMode, realpath: (p) => realpathSync(p), instancesPath: disks });

  before(() => {
    root = realpathSync(mkdtempSync(join(tmpdir(), 'vmf-confine-')));
    images = join(root, 'images');
    disks = join(root, 'disks');
    mkdirSync(images);
    mkdirSync(disks);
    writeFileSync(join(images, 'guest.elf'), 'kernel');
    writeFileSync(join(disks, 'data.img'), 'disk');
    writeFileSync(join(root, 'secret'), 'not for guests');
    symlinkSync(join(root, 'secret'), join(images, 'innocent.elf'));
    symlinkSync(join(disks, 'data.img'), join(images, 'data-link.img'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('lists every file a spec makes QEMU open, and how QEMU uses it', () => {
    const files = vmFilesOf(
      spec({
        boot: { kernel: '/i/vmlinuz', initrd: '/i/initrd.img', append: 'quiet' },
        disks: [
          { path: '/d/a.img', format: 'raw', storage: 'shared' },
          { path: '/d/b.iso', format: 'raw', storage: 'shared', readonly: true },
          { path: 'web-1/disk.qcow2', format: 'qcow2', storage: 'local' },
        ],
        memoryBackend: { kind: 'file', path: '/dev/shm/x.ram', share: true },
      }),
      '/srv/instances',
    );
    assert.deepEqual(
      files.map((f) => [f.field, f.path, f.use]),
      [
        ['boot.kernel', '/i/vmlinuz', 'image'],
        ['boot.initrd', '/i/initrd.img', 'image'],
        ['disks[0].path', '/d/a.img', 'disk'],
        ['disks[1].path', '/d/b.iso', 'image'],
        ['disks[2].path', '/srv/instances/web-1/disk.qcow2', 'disk'],
        ['memoryBackend.path', '/dev/shm/x.ram', 'memory'],
      ],
    );
  });

  it('takes files inside their directories, symlinks resolved', () => {
    const files = confine(
      spec({
        disks: [
          { path: join(disks, 'data.img'), format: 'raw', storage: 'shared' },
          { path: join(images, 'data-link.img'), format: 'raw', storage: 'shared', readonly: true },
        ],
      }),
    );
    assert.deepEqual(
      files.map((f) => f.path),
      [join(images, 'guest.elf'), join(disks, 'data.img'), join(disks, 'data.img')],
    );
  });

  it('refuses a file outside them, naming the field, the path, where it leads and the option', () => {
    const cases: [VmSpec, RegExp][] = [
      [
        spec({ kernel: '/etc/shadow' }),
        /^VM web-1: boot\.kernel \/etc\/shadow is not in a directory VMs may use \(\[vmferry\] image_dirs or disk_dirs: /,
      ],
      [
        spec({ kernel: join(images, 'innocent.elf') }),
        new RegExp(`boot\\.kernel ${join(images, 'innocent.elf')} \\(${join(root, 'secret')}\\) is not in`),
      ],
      [
        spec({ kernel: `${images}/../secret` }),
        /boot\.kernel .*\/images\/\.\.\/secret \(.*\/secret\) is not in/,
      ],
      [
        spec({ disks: [{ path: join(images, 'guest.elf'), format: 'raw', storage: 'shared' }] }),
        /disks\[0\]\.path .*guest\.elf is not in a directory VMs may use \(\[vmferry\] disk_dirs: /,
      ],
    ];
    for (const [s, message] of cases) {
      assert.throws(
        () => confine(s),
        (err: unknown) => err instanceof AuthError && message.test(err.message),
        message.source,
      );
    }
  });

  it('maps guest RAM from a shared file only in test mode, and only in a disk directory', () => {
    const shared = spec({ memoryBackend: { kind: 'file', path: join(disks, 'new.ram'), share: true } });
    assert.throws(
      () => confine(shared),
      (err: unknown) =>
        err instanceof AuthError &&
        err.message ===
          "VM web-1: memoryBackend.path: guest memory in a shared file is for vmferry's tests only",
    );
    assert.equal(
      confine(shared, true).at(-1)?.path,
      join(disks, 'new.ram'),
      'not there yet: its directory counts',
    );
    assert.throws(
      () => confine(spec({ memoryBackend: { kind: 'file', path: '/dev/shm/x.ram', share: true } }), true),
      (err: unknown) =>
        err instanceof AuthError && /memoryBackend\.path \/dev\/shm\/x\.ram is not in/.test(err.message),
    );
  });

  it('knows inside from beside', () => {
    assert.equal(isInside('/srv/images/a.img', '/srv/images'), true);
    assert.equal(isInside('/srv/images', '/srv/images'), false);
    assert.equal(isInside('/srv/images-old/a.img', '/srv/images'), false);
    assert.equal(isInside('/srv/a.img', '/srv/images'), false);
  });

  it('reads directory lists, naming a relative one', () => {
    assert.deepEqual(parseDirList(' /a, /b/c ,,', 'image_dirs'), ['/a', '/b/c']);
    assert.deepEqual(parseDirList('', 'disk_dirs'), []);
    assert.throws(
      () => parseDirList('/a,images', 'image_dirs'),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message === '[vmferry] image_dirs: "images" is not an absolute directory',
    );
  });
});

describe('VM capacity', () => {
  const capacity = { host: 'host-b', memoryMiB: 1000, cpus: 2 };

  it('takes VMs while their memory fits', () => {
    checkVmCapacity({ name: 'a', memoryMiB: 600, vcpus: 2 }, [{ memoryMiB: 400 }], capacity);
  });

  it('refuses memory beyond what is left and vCPUs beyond the CPUs, with 429', () => {
    assert.throws(
      () => checkVmCapacity({ name: 'big', memoryMiB: 601, vcpus: 1 }, [{ memoryMiB: 400 }], capacity),
      (err: unknown) =>
        err instanceof LimitError &&
        err.httpStatus === 429 &&
        err.message ===
          'VM big needs 601 MiB; host-b has 600 of its 1000 MiB for VMs left ([vmferry] max_vm_memory_mib)',
    );
    assert.throws(
      () => checkVmCapacity({ name: 'wide', memoryMiB: 64, vcpus: 3 }, [], capacity),
      (err: unknown) => err instanceof LimitError && err.message === 'VM wide has 3 vCPUs; host-b has 2 CPUs',
    );
  });
});
