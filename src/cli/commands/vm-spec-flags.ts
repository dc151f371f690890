import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '../../errors.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../../guest/index.js';
import { parseVmSpec, type VmSpecDraft } from '../../qemu/index.js';
import { wholeNumber } from '../arg-parsers.js';

/** The flags of `vmferry vm start` that describe the VM (the alternative to --spec FILE). */
export interface SpecFlags {
  spec?: string;
  memory?: string;
  vcpus?: string;
  machine?: string;
  cpu?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  bootDisk?: string;
  disk?: string[];
  nic?: string[];
  workloadMib?: string;
  dirtyMibps?: string;
}

const HARDWARE_FLAGS: [keyof SpecFlags, string][] = [
  ['memory', '--memory'],
  ['vcpus', '--vcpus'],
  ['machine', '--machine'],
  ['cpu', '--cpu'],
  ['kernel', '--kernel'],
  ['initrd', '--initrd'],
  ['append', '--append'],
  ['bootDisk', '--boot-disk'],
  ['disk', '--disk'],
  ['nic', '--nic'],
  ['workloadMib', '--workload-mib'],
  ['dirtyMibps', '--dirty-mibps'],
];

function int(value: string, flag: string): number {
  return wholeNumber(flag)(value);
}

/** `key=value,key=value` (a bare first item is `first`'s value), as --disk and --nic take them. */
export function keyValues(
  text: string,
  flag: string,
  first: string,
  keys: readonly string[],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [i, item] of text.split(',').entries()) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? (i === 0 ? first : item) : item.slice(0, eq);
    const value = eq < 0 ? (i === 0 ? item : 'true') : item.slice(eq + 1);
    if (!keys.includes(key)) {
      throw new UsageError(`${flag} ${JSON.stringify(text)}: unknown key ${JSON.stringify(key)}`, {
        hint: `${flag} takes ${keys.map((k) => `${k}=...`).join(',')}`,
      });
    }
    out[key] = value;
  }
  return out;
}

function readSpecFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read VM spec ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`VM spec ${file} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * A VM spec from --spec FILE (the name from the argument), or from flags; with
 * neither kernel nor disk boot given, the self-verifying guest workload.
 * Exported for tests.
 */
export function specFromFlags(name: string, flags: SpecFlags): VmSpecDraft {
  if (flags.spec !== undefined) {
    const extra = HARDWARE_FLAGS.find(([key]) => flags[key] !== undefined);
    if (extra !== undefined) {
      throw new UsageError(`--spec describes the whole VM: drop ${extra[1]} or put it in ${flags.spec}`);
    }
    const parsed = readSpecFile(flags.spec);
    if (parsed.name !== undefined && parsed.name !== name) {
      throw new UsageError(
        `${flags.spec} names the VM ${JSON.stringify(parsed.name)}, the command ${JSON.stringify(name)}`,
      );
    }
    return parseVmSpec({ ...parsed, name });
  }
  const disks = (flags.disk ?? []).map((text) => {
    const d = keyValues(text, '--disk', 'path', ['path', 'format', 'storage', 'readonly']);
    return {
      ...(d.path !== undefined ? { path: resolve(d.path) } : {}),
      format: d.format,
      storage: d.storage,
      ...(d.readonly === 'true' ? { readonly: true } : {}),
    };
  });
  const nics = (flags.nic ?? []).map((text) => keyValues(text, '--nic', 'bridge', ['bridge', 'mac']));
  const spec: Record<string, unknown> = {
    name,
    vcpus: int(flags.vcpus ?? '1', '--vcpus'),
    disks,
    nics,
    ...(flags.machine !== undefined ? { machine: flags.machine } : {}),
    ...(flags.cpu !== undefined ? { cpu: flags.cpu } : {}),
  };
  if (flags.bootDisk !== undefined) {
    if (flags.kernel !== undefined) throw new UsageError('give --kernel or --boot-disk, not both');
    spec.boot = { firmware: 'bios', disk: int(flags.bootDisk, '--boot-disk') };
    if (flags.memory === undefined) throw new UsageError('--memory is needed with --boot-disk');
    spec.memoryMiB = int(flags.memory, '--memory');
    return parseVmSpec(spec);
  }
  if (flags.kernel !== undefined) {
    if (flags.memory === undefined) throw new UsageError('--memory is needed with --kernel');
    spec.memoryMiB = int(flags.memory, '--memory');
    spec.boot = {
      kernel: resolve(flags.kernel),
      ...(flags.initrd !== undefined ? { initrd: resolve(flags.initrd) } : {}),
      ...(flags.append !== undefined ? { append: flags.append } : {}),
    };
    return parseVmSpec(spec);
  }
  if (flags.initrd !== undefined || flags.append !== undefined) {
    throw new UsageError('--initrd and --append go with --kernel');
  }
  // The self-verifying guest: its workload becomes its command line.
  const workload = int(flags.workloadMib ?? '256', '--workload-mib');
  const dirty = int(flags.dirtyMibps ?? '16', '--dirty-mibps');
  let append: string;
  try {
    append = guestAppend({ memMiB: workload, dirtyMiBps: dirty });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  spec.memoryMiB = flags.memory !== undefined ? int(flags.memory, '--memory') : guestRamMiB(workload);
  spec.boot = { kernel: guestKernelPath(), append };
  return parseVmSpec(spec);
}
