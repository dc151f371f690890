import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HostSetupError } from '../errors.js';
import {
  LINUX_GUEST_BLOCK_MAGIC,
  checkLinuxGuest,
  linuxGuestAppend,
  linuxGuestBlockContent,
  linuxGuestRamMiB,
  writeLinuxGuestBootDisk,
  writeLinuxGuestDiskFill,
  type LinuxGuestFiles,
  type LinuxGuestManifest,
} from './linux-guest.js';
import { guestPageContent } from './pattern.js';

describe('linuxGuestAppend', () => {
  it('puts the console on ttyS0 and only the parameters given', () => {
    assert.equal(linuxGuestAppend({ memMiB: 64 }), 'console=ttyS0 panic=-1 quiet vmf.mem=64 vmf.dirty=0');
  });

  it('writes every parameter', () => {
    assert.equal(
      linuxGuestAppend({
        memMiB: 128,
        dirtyMiBps: 8,
        verifyMiBps: 'max',
        disk: '/dev/vdb',
        diskMiB: 16,
        diskDirtyBlocksPerSec: 0,
        diskVerifyBlocksPerSec: 2048,
        diskFill: 'host',
        nic: 'eth0',
        ip: '198.18.4.2/24',
        peer: '198.18.4.1',
      }),
      'console=ttyS0 panic=-1 quiet vmf.mem=128 vmf.dirty=8 vmf.verify=max vmf.disk=/dev/vdb vmf.diskmib=16 ' +
        'vmf.diskdirty=0 vmf.diskverify=2048 vmf.diskfill=host vmf.nic=eth0 vmf.ip=198.18.4.2/24 vmf.peer=198.18.4.1',
    );
  });

  it('refuses values the guest would not take, naming the parameter and the value', () => {
    const cases: [Parameters<typeof linuxGuestAppend>[0], RegExp][] = [
      [{ memMiB: 0 }, /^memMiB must be an integer from 1 to \d+, got 0$/],
      [{ memMiB: 64, dirtyMiBps: 1.5 }, /^dirtyMiBps must be an integer .* got 1\.5$/],
      [{ memMiB: 64, verifyMiBps: 0 }, /^verifyMiBps must be an integer from 1 .* got 0$/],
      [{ memMiB: 64, disk: 'vda' }, /^disk must be a device like \/dev\/vda, got "vda"$/],
      [{ memMiB: 64, disk: '/dev/vda x' }, /^disk must be a device .* got "\/dev\/vda x"$/],
      [{ memMiB: 64, diskMiB: 8 }, /^diskMiB needs disk, got no disk$/],
      [{ memMiB: 64, disk: '/dev/vda', diskVerifyBlocksPerSec: -1 }, /^diskVerifyBlocksPerSec .* got -1$/],
      [{ memMiB: 64, diskFill: 'host' }, /^diskFill needs disk, got no disk$/],
      [
        { memMiB: 64, disk: '/dev/vda', diskFill: 'zeros' as 'host' },
        /^diskFill must be host or guest, got "zeros"$/,
      ],
      [
        { memMiB: 64, ip: '198.18.4.2' },
        /^ip must be an IPv4 address with a prefix length .* got "198\.18\.4\.2"$/,
      ],
      [{ memMiB: 64, ip: '198.18.4.2/33' }, /^ip must be .* got "198\.18\.4\.2\/33"$/],
      [{ memMiB: 64, peer: 'gateway' }, /^peer must be an IPv4 address, got "gateway"$/],
      [{ memMiB: 64, nic: 'eth 0' }, /^nic must be an interface name like eth0, got "eth 0"$/],
    ];
    for (const [w, message] of cases) {
      assert.throws(
        () => linuxGuestAppend(w),
        (err: unknown) => err instanceof RangeError && message.test(err.message),
        JSON.stringify(w),
      );
    }
  });
});

describe('linuxGuestRamMiB', () => {
  it('leaves 128 MiB for the kernel and caches, and gives at least 256 MiB', () => {
    assert.equal(linuxGuestRamMiB(64), 256);
    assert.equal(linuxGuestRamMiB(512), 640);
    assert.throws(() => linuxGuestRamMiB(0), /memMiB must be an integer from 1/);
  });
});

describe('linuxGuestBlockContent', () => {
  it('is the page pattern of (block, generation) behind a 16-byte header', () => {
    const b = linuxGuestBlockContent(17, 3);
    assert.equal(b.length, 4096);
    assert.deepEqual(
      [b.readUInt32LE(0), b.readUInt32LE(4), b.readUInt32LE(8), b.readUInt32LE(12)],
      [LINUX_GUEST_BLOCK_MAGIC, 17, 3, ~(17 ^ 3) >>> 0],
    );
    assert.deepEqual(b.subarray(16), guestPageContent(17, 3).subarray(16));
    assert.notDeepEqual(linuxGuestBlockContent(17, 4).subarray(16), b.subarray(16));
  });
});

describe('writeLinuxGuestDiskFill', () => {
  it('writes every block at generation 0, none of them zeros, and never over an existing file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmf-disk-fill-'));
    try {
      const path = join(dir, 'fill.raw');
      const blocks = 2500;
      writeLinuxGuestDiskFill(path, blocks * 4096);
      const data = readFileSync(path);
      assert.equal(data.length, blocks * 4096);
      const zero = Buffer.alloc(4096);
      for (const b of [0, 1, 1023, 1024, 2047, 2048, blocks - 1]) {
        const block = data.subarray(b * 4096, (b + 1) * 4096);
        assert.deepEqual(block, linuxGuestBlockContent(b, 0), `block ${b}`);
        assert.notDeepEqual(block, zero);
      }
      assert.throws(
        () => writeLinuxGuestDiskFill(path, 4096),
        (err: unknown) => (err as NodeJS.ErrnoException).code === 'EEXIST',
      );
      assert.equal(readFileSync(path).length, blocks * 4096, 'the existing file is left alone');
      assert.throws(
        () => writeLinuxGuestDiskFill(join(dir, 'odd.raw'), 4097),
        /^RangeError: sizeBytes must be a positive multiple of 4096, got 4097$/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the built Linux guest files', () => {
  let dir: string;
  let files: LinuxGuestFiles;
  const DEFAULT = 'console=ttyS0 vmf.mem=64';
  const ROOM = 64;
  const OFFSET = 1000;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmf-linux-guest-'));
    files = {
      dir,
      kernel: join(dir, 'vmlinuz'),
      initrd: join(dir, 'initrd.img'),
      bootDisk: join(dir, 'boot.img'),
      manifest: join(dir, 'manifest.json'),
    };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function build(): Buffer {
    const image = Buffer.alloc(4096, 0xaa);
    image.write(`${DEFAULT}\n#`.padEnd(ROOM, ' '), OFFSET, 'latin1');
    writeFileSync(files.bootDisk, image);
    writeFileSync(files.kernel, 'k');
    writeFileSync(files.initrd, 'i');
    const manifest: LinuxGuestManifest = {
      kernelPackage: 'linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb',
      busyboxPackage: 'busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb',
      kernelRelease: '6.1.0-57-cloud-amd64',
      modules: ['virtio_ring.ko'],
      defaultBootAppend: DEFAULT,
      bootDisk: { appendOffset: OFFSET, appendRoom: ROOM, sizeBytes: image.length },
    };
    writeFileSync(files.manifest, JSON.stringify(manifest));
    return image;
  }

  it('checkLinuxGuest names the missing files and the command that builds them', () => {
    build();
    rmSync(files.initrd);
    rmSync(files.bootDisk);
    assert.throws(
      () => checkLinuxGuest(files),
      (err: unknown) =>
        err instanceof HostSetupError &&
        err.code === 'VMF_ERR_HOST_SETUP' &&
        err.message === `the Linux guest is not built: missing ${files.initrd}, ${files.bootDisk}` &&
        /node scripts\/setup\.mjs/.test(err.hint ?? ''),
    );
  });

  it('writeLinuxGuestBootDisk rewrites only the APPEND bytes of a copy', () => {
    const image = build();
    const dest = join(dir, 'vm-boot.img');
    writeLinuxGuestBootDisk(dest, 'console=ttyS0 vmf.mem=128 vmf.disk=/dev/vdb', files);
    const copy = readFileSync(dest);
    assert.equal(copy.length, image.length);
    assert.deepEqual(copy.subarray(0, OFFSET), image.subarray(0, OFFSET));
    assert.deepEqual(copy.subarray(OFFSET + ROOM), image.subarray(OFFSET + ROOM));
    assert.equal(
      copy.toString('latin1', OFFSET, OFFSET + ROOM),
      'console=ttyS0 vmf.mem=128 vmf.disk=/dev/vdb\n#'.padEnd(ROOM, ' '),
    );
    assert.deepEqual(readFileSync(files.bootDisk), image, 'the built image is left as it was');
  });

  it('writeLinuxGuestBootDisk refuses an append that does not fit or spans lines, and a changed image', () => {
    build();
    const dest = join(dir, 'refused.img');
    assert.throws(
      () => writeLinuxGuestBootDisk(dest, 'x'.repeat(ROOM - 1), files),
      /^RangeError: append must be one line of at most 62 characters, got 63 characters$/,
    );
    assert.throws(() => writeLinuxGuestBootDisk(dest, 'a\nb', files), /append must be one line/);
    const other = Buffer.alloc(4096, 0xaa);
    writeFileSync(files.bootDisk, other);
    assert.throws(
      () => writeLinuxGuestBootDisk(dest, 'console=ttyS0', files),
      (err: unknown) =>
        err instanceof HostSetupError && /does not hold syslinux\.cfg's APPEND/.test(err.message),
    );
    assert.throws(() => readFileSync(dest), { code: 'ENOENT' });
    assert.throws(() => readFileSync(`${dest}.tmp-${process.pid}`), { code: 'ENOENT' });
  });
});
