import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
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

/** The image file of a disk on a host whose instances_path is `instancesPath`. */
export function diskImagePath(disk: { path: string; storage: DiskStorage }, instancesPath: string): string {
  if (disk.storage === 'shared') return disk.path;
  return join(resolve(instancesPath), checkLocalDiskPath(disk.path));
}

/** True when `path` is `folder` itself or inside it (both absolute). */
export function isInside(folder: string, path: string): boolean {
  const rel = relative(normalize(folder), normalize(path));
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Where the destination finds the backing image of a copied top layer, and how
 * the new top names it. The source's top names its backing image either
 * relative to its own folder (kept: the destination looks beside its copy), or
 * by an absolute path inside the source's instances_path (the same place under
 * the destination's), or by any other absolute path (the same path there: an
 * image folder every host has).
 */
export function destinationBacking(o: {
  /** The backing image as the source's top layer names it. */
  name: string;
  sourceInstancesPath: string;
  destinationInstancesPath: string;
  /** The destination's copy of the top layer. */
  destinationTop: string;
}): { path: string; name: string } {
  if (!isAbsolute(o.name)) return { path: resolve(dirname(o.destinationTop), o.name), name: o.name };
  const source = resolve(o.sourceInstancesPath);
  if (isInside(source, o.name)) {
    const path = join(resolve(o.destinationInstancesPath), relative(source, o.name));
    return { path, name: path };
  }
  return { path: o.name, name: o.name };
}
