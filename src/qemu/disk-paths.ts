import { isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';

/** How a disk is stored: `shared` at the same absolute path on every host, `local` under each host's instances_path. */
export type DiskStorage = 'shared' | 'local';

/**
 * Checks the path of a local disk: relative to instances_path, without `..`,
 * empty or `.` segments and without commas (QEMU's option syntax), so it
 * cannot name a file outside that folder. Returns it unchanged.
 */
export function checkLocalDiskPath(path: string, what = 'path'): string {
  const segments = path.split('/');
  if (
    path.length === 0 ||
    isAbsolute(path) ||
    path.includes(',') ||
    path.includes('\0') ||
    segments.some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new UsageError(
      `${what} of a local disk must be relative to instances_path, without "..", "." or empty parts, got ${JSON.stringify(path)}`,
      { hint: 'for example "web-1/disk.qcow2"' },
    );
  }
  return path;
}

/**
 * The image file of a disk on a host whose instances_path is `instancesPath`:
 * a local disk's path is relative to it, so each host has its own copy.
 */
export function diskImagePath(disk: { path: string; storage: DiskStorage }, instancesPath: string): string {
  if (disk.storage === 'shared') return disk.path;
  return join(resolve(instancesPath), checkLocalDiskPath(disk.path));
}
