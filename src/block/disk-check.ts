import { randomBytes } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { PlanError, UsageError } from '../errors.js';
import type { DestinationDiskView, ImageFingerprint, SourceDisk } from '../policy/index.js';
import { checkLocalDiskPath, diskImagePath, type DiskSpec, type DiskStorage } from '../qemu/index.js';
import { identityMismatch, imageIdentity, imageInfo, runQemuImg, type QemuImgRunner } from './disk-image.js';
import { destinationBacking } from './disk-location.js';

/**
 * The question the source asks the destination before a block migration: for
 * each disk, is the file there the same one (shared storage), is anything at
 * its path, and has it the backing image a copied top would name.
 */
export interface DiskCheckRequest {
  /** The source's instances_path: a backing image named inside it is looked for inside the destination's. */
  sourceInstancesPath: string;
  /** The probe file the source put in each disk's folder for the duration of the check (nova's shared-storage test). */
  probe: { name: string; token: string };
  disks: {
    disk: number;
    storage: DiskSpec['storage'];
    path: string;
    /** The source placed its probe file in this disk's folder. */
    probed: boolean;
    backing?: { name: string; identity: ImageFingerprint } | undefined;
  }[];
}

const PROBE_NAME = /^\.vmferry-probe-[0-9a-f]{32}$/;

/** What the source knows of the disks of a VM: each image's format, size and backing image, from qemu-img. */
export async function inspectSourceDisks(
  disks: readonly DiskSpec[],
  instancesPath: string,
  run: QemuImgRunner = runQemuImg,
): Promise<SourceDisk[]> {
  const out: SourceDisk[] = [];
  for (const [i, d] of disks.entries()) {
    const path = diskImagePath(d, instancesPath);
    const info = await imageInfo(path, run);
    if (info.format !== d.format) {
      throw new PlanError(
        `disk ${i} (${d.path}) is ${info.format} on this host, but the VM spec says ${d.format}`,
      );
    }
    const disk: SourceDisk = {
      disk: i,
      storage: d.storage,
      path: d.path,
      format: d.format,
      virtualSize: info.virtualSize,
      allocatedBytes: info.actualSize,
    };
    if (info.backing !== undefined) {
      const identity = await imageIdentity(info.backing.path, run);
      disk.backing = {
        name: info.backing.name,
        format: info.backing.format ?? identity.format,
        identity: {
          format: identity.format,
          virtualSize: identity.virtualSize,
          sizeBytes: identity.sizeBytes,
          fingerprint: identity.fingerprint,
        },
      };
    }
    out.push(disk);
  }
  return out;
}

/**
 * Puts a probe file (random name and content) in each folder, for the
 * destination to look for: the folders it sees it in are shared with this host.
 * Folders it cannot write to are left out. `remove` takes them away again.
 */
export async function placeProbes(
  folders: readonly string[],
): Promise<{ name: string; token: string; placed: Set<string>; remove: () => Promise<void> }> {
  const name = `.vmferry-probe-${randomBytes(16).toString('hex')}`;
  const token = randomBytes(16).toString('hex');
  const placed = new Set<string>();
  for (const folder of new Set(folders)) {
    try {
      await writeFile(join(folder, name), token, { flag: 'wx', mode: 0o600 });
      placed.add(folder);
    } catch {
      // Not writable here: this folder cannot be shown to be shared.
    }
  }
  const remove = async (): Promise<void> => {
    for (const folder of placed) await rm(join(folder, name), { force: true });
  };
  return { name, token, placed, remove };
}

/** A disk check request from a peer: every field checked, a bad one named. */
export function checkDiskCheckRequest(body: unknown): DiskCheckRequest {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const probe = (b.probe ?? {}) as Record<string, unknown>;
  if (typeof probe.name !== 'string' || !PROBE_NAME.test(probe.name) || typeof probe.token !== 'string') {
    throw new UsageError(
      `probe must be {name: .vmferry-probe-<32 hex>, token}, got ${JSON.stringify(b.probe)}`,
    );
  }
  if (typeof b.sourceInstancesPath !== 'string' || !isAbsolute(b.sourceInstancesPath)) {
    throw new UsageError(
      `sourceInstancesPath must be an absolute path, got ${JSON.stringify(b.sourceInstancesPath)}`,
    );
  }
  if (!Array.isArray(b.disks) || b.disks.length > 64)
    throw new UsageError('disks must be a list of at most 64');
  const disks = b.disks.map((raw: unknown, i: number) => {
    const d = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    const at = `disks[${i}]`;
    if (!Number.isInteger(d.disk)) throw new UsageError(`${at}.disk must be a disk index`);
    if (d.storage !== 'shared' && d.storage !== 'local')
      throw new UsageError(`${at}.storage must be shared or local`);
    const storage: DiskStorage = d.storage;
    const path = typeof d.path === 'string' ? d.path : '';
    if (d.storage === 'local') checkLocalDiskPath(path, `${at}.path`);
    else if (!isAbsolute(path))
      throw new UsageError(`${at}.path of a shared disk must be absolute, got ${JSON.stringify(d.path)}`);
    const backing = d.backing as { name?: unknown; identity?: unknown } | undefined;
    if (backing !== undefined && (typeof backing.name !== 'string' || /[\n\0]/.test(backing.name))) {
      throw new UsageError(`${at}.backing.name must be a file name`);
    }
    return {
      disk: d.disk as number,
      storage,
      path,
      probed: d.probed === true,
      ...(backing !== undefined
        ? { backing: { name: backing.name as string, identity: backing.identity as ImageFingerprint } }
        : {}),
    };
  });
  return {
    sourceInstancesPath: b.sourceInstancesPath,
    probe: { name: probe.name, token: probe.token },
    disks,
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * The destination's answer: for each disk, whether a file is at its path here,
 * whether it is the source's own file (the source's probe file is in its folder:
 * the folder is shared), and whether the backing image a copied top would name
 * is here with the same identity.
 */
export async function viewDisks(
  request: DiskCheckRequest,
  instancesPath: string,
  run: QemuImgRunner = runQemuImg,
): Promise<DestinationDiskView[]> {
  const views: DestinationDiskView[] = [];
  for (const d of request.disks) {
    const path = diskImagePath(d, instancesPath);
    const present = await exists(path);
    const probeSeen = await readFile(join(dirname(path), request.probe.name), 'utf8').then(
      (t) => t === request.probe.token,
      () => false,
    );
    const sameFile = present && d.probed && probeSeen;
    const why = sameFile
      ? `the source's probe file is in the folder of ${path}: shared storage`
      : !present
        ? `no file at ${path}`
        : d.probed
          ? `${path} is another file: the source's probe file is not in ${dirname(path)}`
          : `${path} cannot be shown to be the same file: the source could not put a probe file in its folder`;
    const view: DestinationDiskView = { disk: d.disk, exists: present, sameFile, why };
    if (d.backing !== undefined)
      view.backing = await backingView(request, d.backing, path, instancesPath, run);
    views.push(view);
  }
  return views;
}

async function backingView(
  request: DiskCheckRequest,
  backing: { name: string; identity: ImageFingerprint },
  top: string,
  instancesPath: string,
  run: QemuImgRunner,
): Promise<{ present: boolean; why: string }> {
  const { path } = destinationBacking({
    name: backing.name,
    sourceInstancesPath: request.sourceInstancesPath,
    destinationInstancesPath: instancesPath,
    destinationTop: top,
  });
  if (!(await exists(path))) return { present: false, why: `no ${basename(path)} at ${path}` };
  const here = await imageIdentity(path, run);
  const mismatch = identityMismatch({ ...backing.identity, path }, here);
  return mismatch === undefined
    ? { present: true, why: `same identity at ${path}` }
    : { present: false, why: `${path} is another image: ${mismatch}` };
}
