import { link, lstat, mkdir, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ConflictError, PlanError, describeError } from '../errors.js';
import type { DiskPlan } from '../policy/index.js';
import { diskImagePath, type DiskSpec } from '../qemu/index.js';
import {
  createImage,
  identityMismatch,
  imageIdentity,
  runQemuImg,
  type QemuImgRunner,
} from './disk-image.js';
import { destinationBacking } from './disk-location.js';

/** A file or folder a destination makes for a block migration, as its journal keeps it. */
export interface CreatedFile {
  path: string;
  kind: 'image' | 'folder';
  /** `creating`: journaled before it was made (it may never have been); `created`: this host made it. */
  state: 'creating' | 'created';
}

/**
 * Where the destination journals each file and folder before it makes it and
 * once it has: a restart in between must find what to remove (leftoverFiles).
 */
export interface CreationLedger {
  creating(path: string, kind: CreatedFile['kind']): void;
  created(path: string): void;
}

/** The images a destination created for a block migration, in disk order. */
export interface TargetImages {
  readonly files: readonly string[];
}

/** The image file of each copied disk on this host (where the destination creates it). */
export function targetImagePaths(
  disks: readonly DiskSpec[],
  plans: readonly DiskPlan[],
  instancesPath: string,
): string[] {
  return plans.filter((p) => p.action === 'copy').map((p) => diskImagePath(diskOf(disks, p), instancesPath));
}

function diskOf(disks: readonly DiskSpec[], plan: DiskPlan): DiskSpec {
  const disk = disks[plan.disk];
  if (disk === undefined)
    throw new PlanError(`the plan copies disk ${plan.disk}, which the VM does not have`);
  return disk;
}

/**
 * Where an image is made before it takes its name: beside it, named after the
 * migration, so a file there can only be this migration's.
 */
export function stagingPath(path: string, migrationId: string): string {
  return join(dirname(path), `.${basename(path)}.vmferry-${migrationId}`);
}

/** The folders missing on the way to `folder`, outermost first. */
async function missingFolders(folder: string): Promise<string[]> {
  const missing: string[] = [];
  for (let d = folder; d !== dirname(d); d = dirname(d)) {
    if (await exists(d)) break;
    missing.unshift(d);
  }
  return missing;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Creates the destination's new image of every copied disk, before its QEMU
 * starts: the disk's size and format, and for a top-only copy a qcow2 on this
 * host's copy of the backing image (checked again to be the same image). Each
 * image and folder is journaled (`ledger`) before it is made and again once
 * made; an image is made under its staging name and linked to its own, so an
 * existing file is never overwritten and a restart at any point can tell what
 * this host made. On a failure removes what it made.
 */
export async function createTargetImages(o: {
  migrationId: string;
  disks: readonly DiskSpec[];
  plans: readonly DiskPlan[];
  instancesPath: string;
  sourceInstancesPath: string | undefined;
  ledger: CreationLedger;
  run?: QemuImgRunner;
}): Promise<TargetImages> {
  const run = o.run ?? runQemuImg;
  const files: string[] = [];
  const folders: string[] = [];
  try {
    for (const plan of o.plans.filter((p) => p.action === 'copy')) {
      const disk = diskOf(o.disks, plan);
      const path = diskImagePath(disk, o.instancesPath);
      for (const folder of await missingFolders(dirname(path))) {
        o.ledger.creating(folder, 'folder');
        await mkdir(folder, { mode: 0o700 });
        o.ledger.created(folder);
        folders.push(folder);
      }
      if (await exists(path)) throw imageExists(path);
      const backing = plan.sync === 'top' ? await checkedBacking(plan, path, o, run) : undefined;
      o.ledger.creating(path, 'image');
      const staging = stagingPath(path, o.migrationId);
      await createImage({ path: staging, format: disk.format, virtualSize: plan.virtualSize, backing }, run);
      try {
        await link(staging, path).catch((err: unknown) => {
          throw (err as NodeJS.ErrnoException).code === 'EEXIST' ? imageExists(path) : err;
        });
        files.push(path);
        o.ledger.created(path);
      } finally {
        await rm(staging, { force: true });
      }
    }
  } catch (err) {
    for (const f of files) await rm(f, { force: true }).catch(() => undefined);
    for (const d of folders.reverse()) await rmdir(d).catch(() => undefined);
    throw err;
  }
  return { files };
}

function imageExists(path: string): ConflictError {
  return new ConflictError(`disk image ${path} already exists`, {
    hint: 'vmferry never overwrites an image: remove it, or migrate with --block auto if it is the same file on shared storage',
  });
}

/**
 * What to remove of the files a migration journaled (`files`, in the order
 * journaled), from what is on disk now (`onDisk`: path -> device:inode of what
 * is there): an image journaled as created; an image journaled only as being
 * created when the file at its path is its staging file (the restart came
 * between the link and the journal), and every staging file; the folders it
 * made, innermost first (removed only if empty). Never a file it cannot show
 * it made. Pure.
 */
export function leftoverFiles(
  files: readonly CreatedFile[],
  onDisk: ReadonlyMap<string, string>,
  migrationId: string,
): { files: string[]; folders: string[] } {
  const out: { files: string[]; folders: string[] } = { files: [], folders: [] };
  for (const f of files) {
    if (f.kind === 'folder') {
      if (f.state === 'created' && onDisk.has(f.path)) out.folders.unshift(f.path);
      continue;
    }
    const staging = stagingPath(f.path, migrationId);
    const here = onDisk.get(f.path);
    const staged = onDisk.get(staging);
    if (staged !== undefined) out.files.push(staging);
    if (here !== undefined && (f.state === 'created' || here === staged)) out.files.push(f.path);
  }
  return out;
}

/**
 * Removes what a migration left of the files and folders it journaled
 * (leftoverFiles): after a failure, or after a restart that interrupted it.
 * Never throws; returns what it removed and what it could not.
 */
export async function removeLeftovers(
  files: readonly CreatedFile[],
  migrationId: string,
): Promise<{ removed: string[]; problems: string[] }> {
  const onDisk = new Map<string, string>();
  const look = async (path: string): Promise<void> => {
    const st = await lstat(path).catch(() => undefined);
    if (st !== undefined) onDisk.set(path, `${st.dev}:${st.ino}`);
  };
  for (const f of files) {
    await look(f.path);
    if (f.kind === 'image') await look(stagingPath(f.path, migrationId));
  }
  const leftover = leftoverFiles(files, onDisk, migrationId);
  const removed: string[] = [];
  const problems: string[] = [];
  for (const f of leftover.files) {
    await rm(f, { force: true }).then(
      () => removed.push(f),
      (e: unknown) => problems.push(`removing ${f}: ${describeError(e)}`),
    );
  }
  for (const d of leftover.folders) {
    await rmdir(d).then(
      () => removed.push(d),
      (e: unknown) => {
        // A folder something else put files in since is not this migration's to empty.
        if ((e as NodeJS.ErrnoException).code !== 'ENOTEMPTY')
          problems.push(`removing ${d}: ${describeError(e)}`);
      },
    );
  }
  return { removed, problems };
}

async function checkedBacking(
  plan: DiskPlan,
  top: string,
  o: { instancesPath: string; sourceInstancesPath: string | undefined },
  run: QemuImgRunner,
): Promise<{ name: string; format: string }> {
  const b = plan.backing;
  if (b === undefined || o.sourceInstancesPath === undefined) {
    throw new PlanError(
      `disk ${plan.disk}: a top-only copy needs its backing image and the source's instances_path`,
    );
  }
  const where = destinationBacking({
    name: b.name,
    sourceInstancesPath: o.sourceInstancesPath,
    destinationInstancesPath: o.instancesPath,
    destinationTop: top,
  });
  const here = await imageIdentity(where.path, run).catch((err: unknown) => {
    throw new PlanError(
      `disk ${plan.disk}: backing image ${where.path} is not usable here: ${describeError(err)}`,
    );
  });
  const mismatch = identityMismatch({ ...b.identity, path: where.path }, here);
  if (mismatch !== undefined) {
    throw new PlanError(`disk ${plan.disk}: backing image ${where.path} is not the source's: ${mismatch}`);
  }
  return { name: where.name, format: b.format };
}
