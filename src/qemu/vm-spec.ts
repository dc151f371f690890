import { isAbsolute, join } from 'node:path';
import { UsageError } from '../errors.js';

/** A disk attached to the VM. Live migration assumes shared storage: the path is valid on both hosts. */
export interface DiskSpec {
  path: string;
  format: 'raw' | 'qcow2';
  readonly?: boolean;
}

/** Where guest RAM lives. `file` with `share: true` lets a test read or patch guest memory from outside. */
export type MemoryBackendSpec = { kind: 'ram' } | { kind: 'file'; path: string; share: boolean };

/** What a VM is, independent of the host it runs on. Travels with the VM when it migrates. */
export interface VmSpec {
  name: string;
  memoryMiB: number;
  vcpus: number;
  /** A multiboot ELF or Linux kernel booted with -kernel. */
  kernel: string;
  /** The kernel command line. */
  append?: string;
  disks?: DiskSpec[];
  memoryBackend?: MemoryBackendSpec;
}

export type Accelerator = 'kvm' | 'tcg';

/** How this host runs a VM: not part of the spec because it differs between hosts. */
export interface LaunchOptions {
  accel: Accelerator;
  /** Directory for the monitor socket, serial log, QEMU log and pid file. */
  runDir: string;
  /** `defer`: start as a migration destination waiting for `migrate-incoming`. */
  incoming?: 'defer';
  /** Start with the vCPUs stopped (-S). */
  paused?: boolean;
  qemuBinary?: string;
}

/** The files QEMU uses in a VM's run directory. */
export function runFiles(runDir: string): {
  qmpSocket: string;
  serialLog: string;
  qemuLog: string;
  pidFile: string;
} {
  return {
    qmpSocket: join(runDir, 'qmp.sock'),
    serialLog: join(runDir, 'serial.log'),
    qemuLog: join(runDir, 'qemu.log'),
    pidFile: join(runDir, 'qemu.pid'),
  };
}

/** The id of the RAM backend: source and destination must use the same one or QEMU refuses the stream. */
export const RAM_BACKEND_ID = 'vmf-ram';

function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Checks a VM spec from an operator or a peer and returns it typed; errors name the field and the value. */
export function validateVmSpec(input: unknown): VmSpec {
  if (typeof input !== 'object' || input === null) throw new UsageError('a VM spec must be a JSON object');
  const s = input as Record<string, unknown>;
  const name = s.name;
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new UsageError(`invalid VM name ${JSON.stringify(name)}`, {
      hint: 'use 1-63 letters, digits, dot, dash or underscore, starting with a letter or digit',
    });
  }
  const int = (field: string, min: number, max: number): number => {
    const v = s[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new UsageError(
        `VM ${name}: ${field} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  const memoryMiB = int('memoryMiB', 16, 1024 * 1024);
  const vcpus = int('vcpus', 1, 256);
  if (typeof s.kernel !== 'string' || !isAbsolute(s.kernel)) {
    throw new UsageError(`VM ${name}: kernel must be an absolute path, got ${JSON.stringify(s.kernel)}`);
  }
  if (s.append !== undefined && (typeof s.append !== 'string' || /[\n\0]/.test(s.append))) {
    throw new UsageError(`VM ${name}: append must be a single-line string`);
  }
  const disks: DiskSpec[] = [];
  if (s.disks !== undefined) {
    if (!Array.isArray(s.disks)) throw new UsageError(`VM ${name}: disks must be a list`);
    for (const [i, d] of s.disks.entries()) {
      const disk = d as Partial<DiskSpec> | null;
      if (
        disk === null ||
        typeof disk.path !== 'string' ||
        !isAbsolute(disk.path) ||
        disk.path.includes(',')
      ) {
        throw new UsageError(`VM ${name}: disks[${i}].path must be an absolute path without commas`);
      }
      if (disk.format !== 'raw' && disk.format !== 'qcow2') {
        throw new UsageError(
          `VM ${name}: disks[${i}].format must be raw or qcow2, got ${JSON.stringify(disk.format)}`,
        );
      }
      disks.push({ path: disk.path, format: disk.format, readonly: disk.readonly === true });
    }
  }
  let memoryBackend: MemoryBackendSpec = { kind: 'ram' };
  if (s.memoryBackend !== undefined) {
    const b = asRecord(s.memoryBackend);
    if (b.kind === 'ram') memoryBackend = { kind: 'ram' };
    else if (b.kind === 'file' && typeof b.path === 'string' && isAbsolute(b.path) && !b.path.includes(',')) {
      memoryBackend = { kind: 'file', path: b.path, share: b.share === true };
    } else {
      throw new UsageError(
        `VM ${name}: memoryBackend must be {kind:'ram'} or {kind:'file', path:<absolute>, share}`,
      );
    }
  }
  const spec: VmSpec = { name, memoryMiB, vcpus, kernel: s.kernel, disks, memoryBackend };
  if (typeof s.append === 'string') spec.append = s.append;
  return spec;
}

/**
 * Guest RAM in KiB as given to QEMU. Under TCG, QEMU before 9.0 loses guest
 * writes during migration when a RAM block's size is a multiple of 256 KiB
 * (its dirty-bitmap fast path skips pages the vCPU keeps writing; fixed
 * upstream by "system/physmem: Fix migration dirty bitmap coherency with TCG
 * memory access"). 8 KiB more keeps it off that path. Both sides of a
 * migration use the same accelerator, so they agree on the size.
 */
export function ramSizeKiB(memoryMiB: number, accel: Accelerator): number {
  return memoryMiB * 1024 + (accel === 'tcg' ? 8 : 0);
}

/** The QEMU command line (without the binary) for a spec on this host. Pure. */
export function buildQemuArgv(spec: VmSpec, options: LaunchOptions): string[] {
  const files = runFiles(options.runDir);
  const backend = spec.memoryBackend ?? { kind: 'ram' };
  const size = `${ramSizeKiB(spec.memoryMiB, options.accel)}K`;
  const backendArg =
    backend.kind === 'file'
      ? `memory-backend-file,id=${RAM_BACKEND_ID},size=${size},mem-path=${backend.path},share=${backend.share ? 'on' : 'off'}`
      : `memory-backend-ram,id=${RAM_BACKEND_ID},size=${size}`;
  const accel = options.accel === 'kvm' ? 'kvm' : 'tcg,tb-size=128';
  const argv = [
    '-name',
    `guest=${spec.name},debug-threads=on`,
    '-nodefaults',
    '-no-user-config',
    '-accel',
    accel,
    '-machine',
    `pc,memory-backend=${RAM_BACKEND_ID}`,
    '-object',
    backendArg,
    '-m',
    size,
    '-smp',
    String(spec.vcpus),
    '-kernel',
    spec.kernel,
  ];
  if (spec.append !== undefined && spec.append !== '') argv.push('-append', spec.append);
  for (const [i, disk] of (spec.disks ?? []).entries()) {
    argv.push(
      '-blockdev',
      `driver=file,node-name=file${i},filename=${disk.path}${disk.readonly === true ? ',read-only=on' : ''}`,
      '-blockdev',
      `driver=${disk.format},node-name=disk${i},file=file${i}${disk.readonly === true ? ',read-only=on' : ''}`,
      '-device',
      `virtio-blk-pci,drive=disk${i},id=virtio-disk${i}`,
    );
  }
  argv.push(
    '-chardev',
    `file,id=serial0,path=${files.serialLog}`,
    '-serial',
    'chardev:serial0',
    '-chardev',
    `socket,id=qmp0,path=${files.qmpSocket},server=on,wait=off`,
    '-mon',
    'chardev=qmp0,mode=control',
    '-display',
    'none',
    '-no-reboot',
    '-pidfile',
    files.pidFile,
  );
  if (options.paused === true) argv.push('-S');
  if (options.incoming === 'defer') argv.push('-incoming', 'defer');
  return argv;
}

/**
 * A machine with RAM and nothing else, its vCPUs never started (-S): what the
 * transport tests and relay benchmarks migrate. `memory` declares the backend
 * `m0` (e.g. a file filled from /dev/urandom, so every page is really sent).
 */
export function memoryOnlyArgv(o: {
  name: string;
  runDir: string;
  memoryMiB: number;
  memory: string[];
  extra?: string[];
}): string[] {
  return [
    '-name',
    o.name,
    '-accel',
    'tcg',
    '-machine',
    'pc,memory-backend=m0',
    '-nodefaults',
    '-display',
    'none',
    '-m',
    `${o.memoryMiB}M`,
    '-S',
    ...o.memory,
    '-chardev',
    `socket,id=qmp0,path=${runFiles(o.runDir).qmpSocket},server=on,wait=off`,
    '-mon',
    'chardev=qmp0,mode=control',
    ...(o.extra ?? []),
  ];
}
