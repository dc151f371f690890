import { mkdir, rm, rmdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PlanError, describeError } from '../errors.js';
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

/** The images a destination created for a block migration, and the folders it made for them. */
export interface TargetImages {
  /** Image files, in disk order. */
  readonly files: readonly string[];
  /** Removes the images and the folders made for them (if empty); returns what could not be removed. Never throws. */
  remove(): Promise<string[]>;
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
 * Creates the destination's new image of every copied disk, before its QEMU
 * starts: the disk's size and format, and for a top-only copy a qcow2 on this
 * host's copy of the backing image (checked again to be the same image). Never
 * overwrites a file; on a failure removes what it created.
 */
export async function createTargetImages(o: {
  disks: readonly DiskSpec[];
  plans: readonly DiskPlan[];
  instancesPath: string;
  sourceInstancesPath: string | undefined;
  run?: QemuImgRunner;
}): Promise<TargetImages> {
  const run = o.run ?? runQemuImg;
  const files: string[] = [];
  const folders: string[] = [];
  const remove = async (): Promise<string[]> => {
    const problems: string[] = [];
    for (const f of files.splice(0))
      await rm(f, { force: true }).catch((e: unknown) => problems.push(describeError(e)));
    for (const d of folders.splice(0)) await rmdir(d).catch(() => undefined);
    return problems;
  };
  try {
    for (const plan of o.plans.filter((p) => p.action === 'copy')) {
      const disk = diskOf(o.disks, plan);
      const path = diskImagePath(disk, o.instancesPath);
      const made = await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      // Every folder from the first one made down to the image's, to remove deepest first.
      for (let d = dirname(path); made !== undefined; d = dirname(d)) {
        folders.push(d);
        if (d === made || d === dirname(d)) break;
      }
      const backing = plan.sync === 'top' ? await checkedBacking(plan, path, o, run) : undefined;
      await createImage({ path, format: disk.format, virtualSize: plan.virtualSize, backing }, run);
      files.push(path);
    }
  } catch (err) {
    await remove();
    throw err;
  }
  return { files: [...files], remove };
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
