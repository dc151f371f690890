import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import type { ResolvedOptions } from '../config/index.js';
import { AuthError, LimitError, UsageError } from '../errors.js';
import { diskImagePath, isKernelBoot, type VmSpec } from '../qemu/index.js';

/** Where the files of VM specs may lie ([vmferry] image_dirs and disk_dirs), symlinks resolved. */
export interface VmFileDirs {
  imageDirs: readonly string[];
  diskDirs: readonly string[];
}

/** A comma-separated list of absolute directories, as [vmferry] `option` holds it; the error names the option. */
export function parseDirList(value: string, option: string): string[] {
  const dirs = value
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
  for (const dir of dirs) {
    if (!isAbsolute(dir))
      throw new UsageError(`[vmferry] ${option}: ${JSON.stringify(dir)} is not an absolute directory`);
  }
  return dirs;
}

/** The directories of [vmferry] image_dirs and disk_dirs. */
export function vmFileDirsFrom(o: ResolvedOptions): VmFileDirs {
  return {
    imageDirs: parseDirList(o['vmferry.image_dirs'].value ?? '', 'image_dirs'),
    diskDirs: parseDirList(o['vmferry.disk_dirs'].value ?? '', 'disk_dirs'),
  };
}

/** A file a VM spec makes QEMU open, and what QEMU does with it. */
export interface VmFile {
  /** The spec field, as errors name it (`boot.kernel`, `disks[1].path`). */
  field: string;
  path: string;
  /** image: only read (kernel, initrd, read-only disk); disk: read and written; memory: guest RAM mapped shared. */
  use: 'image' | 'disk' | 'memory';
}

/** Every file of a spec QEMU opens; local disks where they are on this host (under `instancesPath`). */
export function vmFilesOf(spec: VmSpec, instancesPath: string): VmFile[] {
  const files: VmFile[] = [];
  if (isKernelBoot(spec.boot)) {
    files.push({ field: 'boot.kernel', path: spec.boot.kernel, use: 'image' });
    if (spec.boot.initrd !== undefined)
      files.push({ field: 'boot.initrd', path: spec.boot.initrd, use: 'image' });
  }
  for (const [i, disk] of spec.disks.entries())
    files.push({
      field: `disks[${i}].path`,
      path: diskImagePath(disk, instancesPath),
      use: disk.readonly === true ? 'image' : 'disk',
    });
  if (spec.memoryBackend?.kind === 'file')
    files.push({ field: 'memoryBackend.path', path: spec.memoryBackend.path, use: 'memory' });
  return files;
}

/** Whether `path` lies inside `dir` (both absolute, symlinks already resolved). */
export function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/**
 * Checks that every file of `spec` lies, after its symlinks are resolved
 * (`realpath`, passed in), in a directory it may come from: kernels, initrds and
 * read-only disks in an image or a disk directory, writable disks in a disk
 * directory (this host's instances_path is one: local disks lie there), and a
 * shared memory file (test mode only) in a disk directory.
 * A spec travels with its VM, so the destination of a migration checks it again
 * against its own directories. Returns the files with their resolved paths.
 */
export function confineVmFiles(
  spec: VmSpec,
  dirs: VmFileDirs,
  options: { testMode: boolean; realpath: (path: string) => string; instancesPath: string },
): VmFile[] {
  return vmFilesOf(spec, options.instancesPath).map((file) => {
    if (file.use === 'memory' && !options.testMode) {
      throw new AuthError(
        `VM ${spec.name}: ${file.field}: guest memory in a shared file is for vmferry's tests only`,
        {
          hint: 'leave memoryBackend out (RAM); the test mode that allows it is `vmferry agent --test-mode`',
        },
      );
    }
    const allowed = file.use === 'image' ? [...dirs.imageDirs, ...dirs.diskDirs] : dirs.diskDirs;
    const resolved = resolvePath(file.path, options.realpath);
    if (!allowed.some((dir) => isInside(resolved, dir))) {
      const option = file.use === 'image' ? 'image_dirs or disk_dirs' : 'disk_dirs';
      throw new AuthError(
        `VM ${spec.name}: ${file.field} ${file.path}${resolved !== file.path ? ` (${resolved})` : ''} is not in a directory VMs may use ([vmferry] ${option}: ${allowed.join(', ') || 'none'})`,
        { hint: `move the file into one of them, or add its directory to [vmferry] ${option.split(' ')[0]}` },
      );
    }
    return { ...file, path: resolved };
  });
}

/** The path with its symlinks resolved; a file not there yet (a memory file QEMU makes) by its directory. */
function resolvePath(path: string, realpath: (p: string) => string): string {
  try {
    return realpath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return join(realpath(dirname(path)), basename(path));
  }
}

/** What a host gives its VMs. */
export interface VmCapacity {
  host: string;
  /** Guest memory all VMs together may have ([vmferry] max_vm_memory_mib, or 90% of the host's RAM). */
  memoryMiB: number;
  /** The host's CPUs: no VM gets more vCPUs. */
  cpus: number;
}

/**
 * Refuses a VM that does not fit this host: more vCPUs than it has CPUs, or
 * more guest memory than is left of its VM memory (the VMs it has, incoming ones
 * included, count against it). A LimitError (429) naming both figures.
 */
export function checkVmCapacity(
  spec: Pick<VmSpec, 'name' | 'memoryMiB' | 'vcpus'>,
  others: readonly Pick<VmSpec, 'memoryMiB'>[],
  capacity: VmCapacity,
): void {
  if (spec.vcpus > capacity.cpus) {
    throw new LimitError(
      `VM ${spec.name} has ${spec.vcpus} vCPUs; ${capacity.host} has ${capacity.cpus} CPUs`,
      { hint: `give it at most ${capacity.cpus} vCPUs` },
    );
  }
  const used = others.reduce((sum, vm) => sum + vm.memoryMiB, 0);
  if (used + spec.memoryMiB > capacity.memoryMiB) {
    throw new LimitError(
      `VM ${spec.name} needs ${spec.memoryMiB} MiB; ${capacity.host} has ${capacity.memoryMiB - used} of its ${capacity.memoryMiB} MiB for VMs left ([vmferry] max_vm_memory_mib)`,
      { hint: 'stop or migrate a VM away first, or raise [vmferry] max_vm_memory_mib' },
    );
  }
}
