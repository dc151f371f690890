import {
  closeSync,
  copyFileSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { HostSetupError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { guestPageContent } from './pattern.js';
import { GUEST_MAX_RATE_MIBPS } from './workload.js';

/** The files scripts/build-linux-guest.mjs (run by scripts/setup.mjs) builds, in guest/build/linux/. */
export interface LinuxGuestFiles {
  dir: string;
  /** Debian's cloud kernel (bzImage), for `-kernel`. */
  kernel: string;
  /** gzipped newc cpio: busybox, /init, the workload, the virtio modules; for `-initrd`. */
  initrd: string;
  /** FAT image with syslinux, kernel and initramfs: SeaBIOS boots it as the first disk. Copy it per VM. */
  bootDisk: string;
  manifest: string;
}

/** What the build recorded: where the kernel came from and where the boot disk's command line sits. */
export interface LinuxGuestManifest {
  kernelPackage: string;
  busyboxPackage: string;
  kernelRelease: string;
  modules: string[];
  defaultBootAppend: string;
  bootDisk: { appendOffset: number; appendRoom: number; sizeBytes: number };
}

/** What the Linux guest's workload does; becomes `vmf.*` on its kernel command line. */
export interface LinuxGuestWorkload {
  /** RAM the workload fills and verifies, MiB (`vmf.mem`); the guest clamps it to what it has. */
  memMiB: number;
  /** Memory rewrite rate, MiB/s (`vmf.dirty`); default 0. */
  dirtyMiBps?: number | undefined;
  /** Memory verify rate, MiB/s or 'max' (`vmf.verify`); default 'max' (a busy vCPU). */
  verifyMiBps?: number | 'max' | undefined;
  /** The data disk's device in the guest (`vmf.disk`), e.g. '/dev/vda'; no disk check without it. */
  disk?: string | undefined;
  /** How much of the data disk the check uses, MiB (`vmf.diskmib`); default all of it, at most 64. */
  diskMiB?: number | undefined;
  /** Blocks (4 KiB) rewritten per second (`vmf.diskdirty`); default 16. */
  diskDirtyBlocksPerSec?: number | undefined;
  /** Blocks read back and checked per second, or 'max' (`vmf.diskverify`); default 1024. */
  diskVerifyBlocksPerSec?: number | 'max' | undefined;
  /**
   * Who writes every block at generation 0 (`vmf.diskfill`): `guest` (default)
   * at start, or `host`, which did before the VM started (writeLinuxGuestDiskFill).
   */
  diskFill?: 'host' | 'guest' | undefined;
  /** The NIC's address with prefix length (`vmf.ip`), e.g. '198.18.4.2/24'. */
  ip?: string | undefined;
  /** The address it pings once a second (`vmf.peer`); no network check without it. */
  peer?: string | undefined;
  /** The interface `vmf.ip` goes on (`vmf.nic`); default eth0, the first virtio-net NIC. */
  nic?: string | undefined;
}

/** Size of a data disk block, bytes: block `b` is at offset `b * LINUX_GUEST_BLOCK_SIZE` of the disk. */
export const LINUX_GUEST_BLOCK_SIZE = 4096;

/** The first word of every data disk block ("VDSK" little-endian). */
export const LINUX_GUEST_BLOCK_MAGIC = 0x4b534456;

const LINUX_CONSOLE_ARGS = 'console=ttyS0 panic=-1 quiet';
const MAX_BLOCK_RATE = 1_048_576;

export function linuxGuestFiles(): LinuxGuestFiles {
  const dir = join(packageRoot(), 'guest', 'build', 'linux');
  return {
    dir,
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    bootDisk: join(dir, 'boot.img'),
    manifest: join(dir, 'manifest.json'),
  };
}

/**
 * Checks that the Linux guest is built and returns its manifest; otherwise a
 * HostSetupError that names the missing files and the command that builds them.
 */
export function checkLinuxGuest(files: LinuxGuestFiles = linuxGuestFiles()): LinuxGuestManifest {
  const missing = [files.kernel, files.initrd, files.bootDisk, files.manifest].filter((f) => !existsSync(f));
  if (missing.length > 0) {
    throw new HostSetupError(`the Linux guest is not built: missing ${missing.join(', ')}`, {
      hint: 'run node scripts/setup.mjs (it runs scripts/build-linux-guest.mjs, which fetches the kernel with apt-get download)',
    });
  }
  return JSON.parse(readFileSync(files.manifest, 'utf8')) as LinuxGuestManifest;
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

function checkRate(name: string, value: number | 'max', max: number): void {
  if (value !== 'max') checkInteger(name, value, 1, max);
}

/**
 * The kernel command line for the Linux guest: console on ttyS0, quiet,
 * reboot (so QEMU with -no-reboot exits) on a panic, and the workload's
 * `vmf.*` parameters. Throws RangeError naming a parameter the guest would refuse.
 */
export function linuxGuestAppend(w: LinuxGuestWorkload): string {
  checkInteger('memMiB', w.memMiB, 1, 1_048_576);
  const args = [LINUX_CONSOLE_ARGS, `vmf.mem=${w.memMiB}`];
  const dirty = w.dirtyMiBps ?? 0;
  checkInteger('dirtyMiBps', dirty, 0, GUEST_MAX_RATE_MIBPS);
  args.push(`vmf.dirty=${dirty}`);
  if (w.verifyMiBps !== undefined) {
    checkRate('verifyMiBps', w.verifyMiBps, GUEST_MAX_RATE_MIBPS);
    args.push(`vmf.verify=${w.verifyMiBps}`);
  }
  if (w.disk !== undefined) {
    if (!/^\/dev\/[a-z][a-z0-9]*$/.test(w.disk)) {
      throw new RangeError(`disk must be a device like /dev/vda, got ${JSON.stringify(w.disk)}`);
    }
    args.push(`vmf.disk=${w.disk}`);
  }
  const diskOnly: [string, number | 'max' | undefined][] = [
    ['diskMiB', w.diskMiB],
    ['diskDirtyBlocksPerSec', w.diskDirtyBlocksPerSec],
    ['diskVerifyBlocksPerSec', w.diskVerifyBlocksPerSec],
    ['diskFill', w.diskFill === undefined ? undefined : 0],
  ];
  for (const [name, value] of diskOnly) {
    if (value !== undefined && w.disk === undefined) throw new RangeError(`${name} needs disk, got no disk`);
  }
  if (w.diskMiB !== undefined) {
    checkInteger('diskMiB', w.diskMiB, 1, 1_048_576);
    args.push(`vmf.diskmib=${w.diskMiB}`);
  }
  if (w.diskDirtyBlocksPerSec !== undefined) {
    checkInteger('diskDirtyBlocksPerSec', w.diskDirtyBlocksPerSec, 0, MAX_BLOCK_RATE);
    args.push(`vmf.diskdirty=${w.diskDirtyBlocksPerSec}`);
  }
  if (w.diskVerifyBlocksPerSec !== undefined) {
    checkRate('diskVerifyBlocksPerSec', w.diskVerifyBlocksPerSec, MAX_BLOCK_RATE);
    args.push(`vmf.diskverify=${w.diskVerifyBlocksPerSec}`);
  }
  if (w.diskFill !== undefined) {
    if (w.diskFill !== 'host' && w.diskFill !== 'guest') {
      throw new RangeError(`diskFill must be host or guest, got ${JSON.stringify(w.diskFill)}`);
    }
    args.push(`vmf.diskfill=${w.diskFill}`);
  }
  if (w.nic !== undefined) {
    if (!/^[a-z][a-z0-9]{0,14}$/.test(w.nic)) {
      throw new RangeError(`nic must be an interface name like eth0, got ${JSON.stringify(w.nic)}`);
    }
    args.push(`vmf.nic=${w.nic}`);
  }
  if (w.ip !== undefined) {
    const [addr = '', prefix = '', extra] = w.ip.split('/');
    if (!isIPv4(addr) || !/^\d{1,2}$/.test(prefix) || Number(prefix) > 32 || extra !== undefined) {
      throw new RangeError(
        `ip must be an IPv4 address with a prefix length like 198.18.4.2/24, got ${JSON.stringify(w.ip)}`,
      );
    }
    args.push(`vmf.ip=${w.ip}`);
  }
  if (w.peer !== undefined) {
    if (!isIPv4(w.peer)) throw new RangeError(`peer must be an IPv4 address, got ${JSON.stringify(w.peer)}`);
    args.push(`vmf.peer=${w.peer}`);
  }
  return args.join(' ');
}

/** VM RAM (MiB) for a Linux guest whose workload holds `memMiB`: the kernel, initramfs and caches take about 100 MiB. */
export function linuxGuestRamMiB(memMiB: number): number {
  checkInteger('memMiB', memMiB, 1, 1_048_576);
  return Math.max(256, memMiB + 128);
}

/**
 * Copies the built boot disk to `dest` (a VM's own boot disk) with `append`
 * as its kernel command line: syslinux.cfg's APPEND is rewritten in place,
 * the image stays the same size. Written to a temporary file, then renamed.
 */
export function writeLinuxGuestBootDisk(
  dest: string,
  append: string,
  files: LinuxGuestFiles = linuxGuestFiles(),
): void {
  const manifest = checkLinuxGuest(files);
  const { appendOffset, appendRoom } = manifest.bootDisk;
  const region = `${append}\n#`;
  if (/[\r\n]/.test(append) || region.length > appendRoom) {
    throw new RangeError(
      `append must be one line of at most ${appendRoom - 2} characters, got ${append.length} characters`,
    );
  }
  const expected = Buffer.from(`${manifest.defaultBootAppend}\n#`.padEnd(appendRoom, ' '), 'latin1');
  const tmp = `${dest}.tmp-${process.pid}`;
  copyFileSync(files.bootDisk, tmp);
  try {
    const fd = openSync(tmp, 'r+');
    try {
      const found = Buffer.alloc(appendRoom);
      readSync(fd, found, 0, appendRoom, appendOffset);
      if (!found.equals(expected)) {
        throw new HostSetupError(
          `${files.bootDisk} does not hold syslinux.cfg's APPEND where its manifest says`,
          {
            hint: 'rebuild it: node scripts/build-linux-guest.mjs --force',
          },
        );
      }
      writeSync(fd, Buffer.from(region.padEnd(appendRoom, ' '), 'latin1'), 0, appendRoom, appendOffset);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, dest);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * The 4096 bytes the Linux guest writes to data disk block `block` at write
 * generation `generation` (0 after its first fill): the memory page pattern
 * of `guestPageContent(block, generation)` with its first 16 bytes replaced
 * by the header: magic "VDSK", block, generation, ~(block ^ generation),
 * little-endian uint32s.
 */
export function linuxGuestBlockContent(block: number, generation: number): Buffer {
  checkInteger('block', block, 0, 0xffff_ffff);
  checkInteger('generation', generation, 0, 0xffff_ffff);
  const out = guestPageContent(block, generation);
  out.writeUInt32LE(LINUX_GUEST_BLOCK_MAGIC, 0);
  out.writeUInt32LE(block, 4);
  out.writeUInt32LE(generation, 8);
  out.writeUInt32LE(~(block ^ generation) >>> 0, 12);
  return out;
}

/**
 * Writes a new raw disk image of `sizeBytes` (a whole number of blocks) at
 * `path` in which every block `b` holds linuxGuestBlockContent(b, 0): what the
 * Linux guest expects everywhere from its first second with `diskFill: 'host'`.
 * No block of it reads as zeros. An existing file is never overwritten.
 */
export function writeLinuxGuestDiskFill(path: string, sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % LINUX_GUEST_BLOCK_SIZE !== 0) {
    throw new RangeError(
      `sizeBytes must be a positive multiple of ${LINUX_GUEST_BLOCK_SIZE}, got ${sizeBytes}`,
    );
  }
  const chunkBlocks = 1024;
  const fd = openSync(path, 'wx', 0o600);
  try {
    const blocks = sizeBytes / LINUX_GUEST_BLOCK_SIZE;
    for (let first = 0; first < blocks; first += chunkBlocks) {
      const count = Math.min(chunkBlocks, blocks - first);
      const chunk = Buffer.concat(
        Array.from({ length: count }, (_, k) => linuxGuestBlockContent(first + k, 0)),
      );
      writeSync(fd, chunk, 0, chunk.length, first * LINUX_GUEST_BLOCK_SIZE);
    }
  } catch (err) {
    closeSync(fd);
    rmSync(path, { force: true });
    throw err;
  }
  closeSync(fd);
}
