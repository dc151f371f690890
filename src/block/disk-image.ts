import { execFile } from 'node:child_process';
import { open, rm } from 'node:fs/promises';
import { ConflictError, DiskImageError, HostSetupError } from '../errors.js';
import { diskIdentity, type DiskIdentity } from '../qemu/index.js';

/** The disk formats vmferry creates and copies. */
export type DiskFormat = 'raw' | 'qcow2';

/** What `qemu-img info` says about an image, the parts block migration reads. */
export interface ImageInfo {
  format: string;
  /** The size the guest sees, bytes. */
  virtualSize: number;
  /** Bytes the image takes on the host's storage. */
  actualSize: number;
  /** The image it is layered on (qcow2), as written in its header and resolved from its folder. */
  backing: { name: string; path: string; format: string | undefined } | undefined;
}

/**
 * What makes two image files the same image: format, virtual size, and the
 * file's size and fingerprint (its first and last MiB: the qcow2 header and
 * tables, the end of the data). Meant for images nobody writes, such as a
 * backing image: a file in use can change between two looks.
 */
export interface ImageIdentity extends DiskIdentity {
  format: string;
  virtualSize: number;
}

/** Runs `qemu-img` with `args` and resolves with its stdout; injected so tests can fake it. */
export type QemuImgRunner = (args: readonly string[]) => Promise<string>;

const MiB = 1024 * 1024;

/** The default runner: `qemu-img` from PATH (Debian: qemu-utils). */
export const runQemuImg: QemuImgRunner = (args) =>
  new Promise((resolve, reject) => {
    execFile('qemu-img', [...args], { encoding: 'utf8', maxBuffer: 4 * MiB }, (err, stdout, stderr) => {
      if (err === null) {
        resolve(stdout);
        return;
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(
          new HostSetupError('the qemu-img command is not installed', {
            hint: 'install qemu-utils (node scripts/setup.mjs does)',
            cause: err,
          }),
        );
        return;
      }
      const detail = stderr.trim().split('\n').filter(Boolean).slice(-2).join('; ');
      reject(
        new DiskImageError(`qemu-img ${args[0] ?? ''} failed: ${detail || err.message}`, { cause: err }),
      );
    });
  });

/** How to create an image: its own size and format, and for an incremental copy the image below it. */
export interface NewImage {
  path: string;
  format: DiskFormat;
  virtualSize: number;
  /** qcow2 only: the backing image, named as it is to be written in the header (relative to `path`'s folder, or absolute). */
  backing?: { name: string; format: string } | undefined;
}

/** `qemu-img create` arguments for `image`. Pure. */
export function qemuImgCreateArgs(image: NewImage): string[] {
  if (!Number.isSafeInteger(image.virtualSize) || image.virtualSize <= 0) {
    throw new RangeError(`virtualSize must be a whole number of bytes > 0, got ${image.virtualSize}`);
  }
  const args = ['create', '-q', '-f', image.format];
  if (image.backing !== undefined) {
    if (image.format !== 'qcow2') throw new RangeError(`a ${image.format} image cannot have a backing image`);
    args.push('-b', image.backing.name, '-F', image.backing.format);
  }
  args.push(image.path, String(image.virtualSize));
  return args;
}

/**
 * Creates an image file that does not exist yet (an existing file is never
 * overwritten: ConflictError naming it). A failed creation leaves no file.
 */
export async function createImage(image: NewImage, run: QemuImgRunner = runQemuImg): Promise<void> {
  const args = qemuImgCreateArgs(image);
  try {
    await (await open(image.path, 'wx', 0o600)).close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ConflictError(`disk image ${image.path} already exists`, {
        hint: 'vmferry never overwrites an image: remove it, or migrate with --block auto if it is the same file on shared storage',
      });
    }
    throw new DiskImageError(`cannot create disk image ${image.path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    await run(args);
  } catch (err) {
    await rm(image.path, { force: true });
    throw err;
  }
}

function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
}

/** Reads `qemu-img info --output=json` of the image at `path`. Pure. */
export function parseImageInfo(json: string, path: string): ImageInfo {
  let parsed: Record<string, unknown>;
  try {
    parsed = asRecord(JSON.parse(json));
  } catch (err) {
    throw new DiskImageError(`qemu-img info of ${path} did not print JSON`, { cause: err });
  }
  const { format } = parsed;
  const virtualSize = parsed['virtual-size'];
  if (typeof format !== 'string' || typeof virtualSize !== 'number') {
    throw new DiskImageError(`qemu-img info of ${path} gave no format or virtual size`);
  }
  const name = parsed['backing-filename'];
  const full = parsed['full-backing-filename'];
  const backingFormat = parsed['backing-filename-format'];
  return {
    format,
    virtualSize,
    actualSize: typeof parsed['actual-size'] === 'number' ? parsed['actual-size'] : 0,
    backing:
      typeof name === 'string'
        ? {
            name,
            path: typeof full === 'string' ? full : name,
            format: typeof backingFormat === 'string' ? backingFormat : undefined,
          }
        : undefined,
  };
}

/**
 * What `qemu-img info` says about the image at `path`. `-U` (force-share): the
 * image may be open in a running QEMU, which holds a write lock on it.
 */
export async function imageInfo(path: string, run: QemuImgRunner = runQemuImg): Promise<ImageInfo> {
  return parseImageInfo(await run(['info', '-U', '--output=json', path]), path);
}

/** The identity of the image at `path`: what qemu-img says of it, and its fingerprint. */
export async function imageIdentity(path: string, run: QemuImgRunner = runQemuImg): Promise<ImageIdentity> {
  const info = await imageInfo(path, run);
  return { ...diskIdentity(path), format: info.format, virtualSize: info.virtualSize };
}

/** Why `b` is not the same image as `a`, or undefined when it is. Pure. */
export function identityMismatch(a: ImageIdentity, b: ImageIdentity): string | undefined {
  if (a.format !== b.format) return `format ${b.format}, not ${a.format}`;
  if (a.virtualSize !== b.virtualSize) return `virtual size ${b.virtualSize}, not ${a.virtualSize} bytes`;
  if (a.sizeBytes !== b.sizeBytes) return `file size ${b.sizeBytes}, not ${a.sizeBytes} bytes`;
  if (a.fingerprint !== b.fingerprint) return 'different content in its first or last MiB';
  return undefined;
}
