import { isAbsolute, join } from 'node:path';
import { UsageError } from '../errors.js';
import { checkLocalDiskPath, type DiskStorage } from './disk-paths.js';

/**
 * The VM spec: what a VM is, independent of the host it runs on. It travels
 * with the VM when it migrates, so both ends build the same virtual hardware.
 * The schema is documented in docs/vm-spec.md; keep the two in step.
 */

/** Boot a kernel directly (-kernel/-initrd/-append). */
export interface KernelBoot {
  kernel: string;
  initrd?: string;
  /** The kernel command line. */
  append?: string;
}

/** Boot through SeaBIOS from one of the VM's disks. */
export interface FirmwareBoot {
  firmware: 'bios';
  /** Index into `disks`. */
  disk: number;
}

export type BootSpec = KernelBoot | FirmwareBoot;

/**
 * A virtio-blk disk. `shared`: the same file at the same absolute path on every
 * host. `local`: `path` is relative to each host's instances_path; block
 * migration copies it into the destination's.
 */
export interface DiskSpec {
  path: string;
  format: 'raw' | 'qcow2';
  storage: DiskStorage;
  readonly?: boolean;
}

/** A virtio-net NIC on a Linux bridge of the host; the agent adds a tap device for it. */
export interface NicSpec {
  bridge: string;
  mac: string;
}

/** Where guest RAM lives. `file` with `share: true` lets a test read or patch guest memory from outside. */
export type MemoryBackendSpec = { kind: 'ram' } | { kind: 'file'; path: string; share: boolean };

/** A VM as an agent stores and migrates it: every choice made (machine, CPU, MACs). */
export interface VmSpec {
  name: string;
  memoryMiB: number;
  vcpus: number;
  /** A QEMU machine type, versioned (pc-i440fx-7.2) once the agent resolved it. */
  machine: string;
  /** A named QEMU CPU model, or `host`. */
  cpu: string;
  boot: BootSpec;
  disks: DiskSpec[];
  nics: NicSpec[];
  memoryBackend?: MemoryBackendSpec;
}

/**
 * A VM as an operator asks for it: machine, CPU and MACs may be left out (the
 * agent fills them in when it creates the VM and stores them).
 */
export interface VmSpecDraft extends Omit<VmSpec, 'machine' | 'cpu' | 'nics'> {
  machine?: string;
  cpu?: string;
  nics: (Omit<NicSpec, 'mac'> & { mac?: string })[];
}

export type Accelerator = 'kvm' | 'tcg';

/** How this host runs a VM: not part of the spec because it differs between hosts. */
export interface LaunchOptions {
  accel: Accelerator;
  /** Directory for the monitor socket, serial log, QEMU log and pid file. */
  runDir: string;
  /** The tap device of each NIC on this host, in spec order (the agent creates them). */
  taps?: string[];
  /** This host's instances_path: where the images of local disks are (their paths are relative to it). */
  instancesPath?: string;
  /** `defer`: start as a migration destination waiting for `migrate-incoming`. */
  incoming?: 'defer';
  /** Start with the vCPUs stopped (-S). */
  paused?: boolean;
  qemuBinary?: string;
  /** Start QEMU as this user (setpriv, by the root agent): it never holds root. */
  runAs?: string;
}

/**
 * QEMU's seccomp sandbox for every VM an agent starts: no obsolete system calls,
 * no set*uid/gid (privileges stay dropped), no fork/exec, no scheduler or
 * priority changes. QEMU 7.2 accepts each. `-runas` cannot go with
 * elevateprivileges=deny there (its setuid comes after the filter and QEMU dies
 * of SIGSYS), so the agent starts QEMU as its user instead (LaunchOptions.runAs).
 */
export const QEMU_SANDBOX = [
  '-sandbox',
  'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
];

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

export const MAX_DISKS = 8;
export const MAX_NICS = 8;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** QEMU machine and CPU model names: letters, digits, dot, dash, underscore (Opteron_G5, pc-q35-7.2). */
const QEMU_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** A Linux interface name: 1-15 characters, no slash, colon or blank. */
const IFNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

const TOP_FIELDS = [
  'name',
  'memoryMiB',
  'vcpus',
  'machine',
  'cpu',
  'boot',
  'disks',
  'nics',
  'memoryBackend',
  // The flat form the first callers used: {kernel, append} instead of boot.
  'kernel',
  'append',
];

/** Reads one object of the spec, each error naming the field (`disks[1].format`) and the value. */
class FieldReader {
  constructor(
    private readonly vm: string,
    private readonly at: string,
    private readonly value: Record<string, unknown>,
  ) {}

  static of(vm: string, at: string, value: unknown, allowed: readonly string[]): FieldReader {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw fieldError(vm, at, value, 'must be a JSON object');
    }
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!allowed.includes(key)) {
        throw new UsageError(`VM ${vm}: unknown field ${join2(at, key)}`, {
          hint: `${at === '' ? 'a VM spec' : at} has the fields ${allowed.filter((f) => f !== 'kernel' && f !== 'append').join(', ')} (docs/vm-spec.md)`,
        });
      }
    }
    return new FieldReader(vm, at, record);
  }

  has(key: string): boolean {
    return this.value[key] !== undefined;
  }

  raw(key: string): unknown {
    return this.value[key];
  }

  path(key: string): string {
    return join2(this.at, key);
  }

  fail(key: string, rule: string, hint?: string): never {
    throw fieldError(this.vm, this.path(key), this.value[key], rule, hint);
  }

  int(key: string, min: number, max: number): number {
    const v = this.value[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(key, `must be an integer from ${min} to ${max}`);
    }
    return v;
  }

  string(key: string, pattern: RegExp, rule: string, hint?: string): string {
    const v = this.value[key];
    if (typeof v !== 'string' || !pattern.test(v)) this.fail(key, rule, hint);
    return v;
  }

  optionalString(key: string, pattern: RegExp, rule: string): string | undefined {
    return this.has(key) ? this.string(key, pattern, rule) : undefined;
  }

  /** An absolute path QEMU can take inside a comma-separated option. */
  file(key: string): string {
    const v = this.value[key];
    if (typeof v !== 'string' || !isAbsolute(v) || /[,\n\0]/.test(v)) {
      this.fail(key, 'must be an absolute path without commas');
    }
    return v;
  }

  /** A local disk's path: relative to instances_path, never leaving it (checkLocalDiskPath). */
  localPath(key: string): string {
    const v = this.value[key];
    try {
      if (typeof v !== 'string') throw new TypeError('not a string');
      return checkLocalDiskPath(v);
    } catch {
      return this.fail(
        key,
        'must be a path relative to instances_path, without "..", "." or empty parts, and without commas',
        'for example "web-1/disk.qcow2"',
      );
    }
  }

  oneOf<T extends string>(key: string, values: readonly T[], hint?: string): T {
    const v = this.value[key];
    if (typeof v !== 'string' || !values.includes(v as T)) {
      this.fail(key, `must be ${values.map((x) => JSON.stringify(x)).join(' or ')}`, hint);
    }
    return v as T;
  }

  boolean(key: string): boolean | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') this.fail(key, 'must be true or false');
    return v;
  }

  list(key: string, max: number): unknown[] {
    const v = this.value[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) this.fail(key, 'must be a list');
    if (v.length > max) this.fail(key, `may hold at most ${max} entries`);
    return v;
  }
}

function join2(at: string, key: string): string {
  return at === '' ? key : `${at}.${key}`;
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

function fieldError(vm: string, path: string, value: unknown, rule: string, hint?: string): UsageError {
  return new UsageError(`VM ${vm}: ${path || 'the spec'} ${rule}, got ${show(value)}`, { hint });
}

function parseBoot(vm: string, r: FieldReader, diskCount: number): BootSpec {
  const legacy = r.has('kernel') || r.has('append');
  if (legacy && r.has('boot')) {
    throw new UsageError(`VM ${vm}: give either boot or the flat kernel/append fields, not both`, {
      hint: 'write boot: {kernel, initrd?, append?}',
    });
  }
  if (legacy) {
    const kernel = r.file('kernel');
    const append = r.optionalString('append', /^[^\n\0]*$/, 'must be a single-line string');
    return append === undefined ? { kernel } : { kernel, append };
  }
  if (!r.has('boot')) {
    throw new UsageError(`VM ${vm}: boot is missing`, {
      hint: 'boot: {kernel: "/path/vmlinuz", initrd?, append?} or {firmware: "bios", disk: 0}',
    });
  }
  const raw = r.raw('boot') as Record<string, unknown> | null;
  if (typeof raw === 'object' && raw !== null && 'firmware' in raw) {
    const b = FieldReader.of(vm, 'boot', raw, ['firmware', 'disk']);
    b.oneOf('firmware', ['bios'] as const);
    if (diskCount === 0) b.fail('disk', 'names a disk, but the VM has none');
    return { firmware: 'bios', disk: b.int('disk', 0, diskCount - 1) };
  }
  const b = FieldReader.of(vm, 'boot', raw, ['kernel', 'initrd', 'append']);
  const boot: KernelBoot = { kernel: b.file('kernel') };
  if (b.has('initrd')) boot.initrd = b.file('initrd');
  const append = b.optionalString('append', /^[^\n\0]*$/, 'must be a single-line string');
  if (append !== undefined) boot.append = append;
  return boot;
}

function parseDisk(vm: string, at: string, value: unknown): DiskSpec {
  const d = FieldReader.of(vm, at, value, ['path', 'format', 'storage', 'readonly']);
  const storage = d.oneOf(
    'storage',
    ['shared', 'local'] as const,
    "shared: the same file at the same path on every host; local: under each host's instances_path, copied by block migration",
  );
  const disk: DiskSpec = {
    path: storage === 'shared' ? d.file('path') : d.localPath('path'),
    format: d.oneOf('format', ['raw', 'qcow2'] as const),
    storage,
  };
  if (d.boolean('readonly') === true) disk.readonly = true;
  return disk;
}

/** Checks a MAC address and returns it in lower case; it must be unicast (QEMU refuses multicast). */
export function normaliseMac(text: string): string | undefined {
  const mac = text.toLowerCase();
  if (!MAC_RE.test(mac)) return undefined;
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) return undefined;
  return mac;
}

function parseNic(vm: string, at: string, value: unknown): VmSpecDraft['nics'][number] {
  const n = FieldReader.of(vm, at, value, ['bridge', 'mac']);
  const bridge = n.string(
    'bridge',
    IFNAME_RE,
    'must be a Linux bridge name (1-15 letters, digits, dot, dash or underscore)',
  );
  if (!n.has('mac')) return { bridge };
  const raw = n.raw('mac');
  const mac = typeof raw === 'string' ? normaliseMac(raw) : undefined;
  if (mac === undefined) n.fail('mac', 'must be a unicast MAC address like 52:54:00:12:34:56');
  return { bridge, mac };
}

function parseMemoryBackend(vm: string, value: unknown): MemoryBackendSpec {
  const m = FieldReader.of(vm, 'memoryBackend', value, ['kind', 'path', 'share']);
  const kind = m.oneOf('kind', ['ram', 'file'] as const);
  if (kind === 'ram') {
    if (m.has('path') || m.has('share')) m.fail('kind', 'takes no path or share when "ram"');
    return { kind };
  }
  return { kind, path: m.file('path'), share: m.boolean('share') === true };
}

/**
 * Checks a VM spec from an operator and returns it typed, with machine, CPU
 * and MACs still optional; every error names the field and the value. Accepts
 * the flat form `{kernel, append}` of the first callers as boot: {kernel, append}.
 */
export function parseVmSpec(input: unknown): VmSpecDraft {
  const name = (input as { name?: unknown } | null)?.name;
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new UsageError(`invalid VM name ${show(name)}`, {
      hint: 'use 1-63 letters, digits, dot, dash or underscore, starting with a letter or digit',
    });
  }
  const r = FieldReader.of(name, '', input, TOP_FIELDS);
  const memoryMiB = r.int('memoryMiB', 16, 1024 * 1024);
  const vcpus = r.int('vcpus', 1, 256);
  const machine = r.optionalString(
    'machine',
    QEMU_NAME_RE,
    'must be a QEMU machine type such as pc-i440fx-7.2 or pc-q35-7.2',
  );
  const cpu = r.optionalString('cpu', QEMU_NAME_RE, 'must be a QEMU CPU model such as qemu64 or host');
  const disks = r.list('disks', MAX_DISKS).map((d, i) => parseDisk(name, `disks[${i}]`, d));
  const nics = r.list('nics', MAX_NICS).map((n, i) => parseNic(name, `nics[${i}]`, n));
  const macs = nics.flatMap((n) => (n.mac !== undefined ? [n.mac] : []));
  const twice = macs.find((m, i) => macs.indexOf(m) !== i);
  if (twice !== undefined) {
    const i = nics.map((n) => n.mac).lastIndexOf(twice);
    throw fieldError(name, `nics[${i}].mac`, twice, 'is already the MAC of another NIC of this VM');
  }
  const boot = parseBoot(name, r, disks.length);
  const draft: VmSpecDraft = { name, memoryMiB, vcpus, boot, disks, nics };
  if (machine !== undefined) draft.machine = machine;
  if (cpu !== undefined) draft.cpu = cpu;
  if (r.has('memoryBackend')) draft.memoryBackend = parseMemoryBackend(name, r.raw('memoryBackend'));
  return draft;
}

/**
 * Checks a complete VM spec (from a peer agent or the journal): as parseVmSpec,
 * and machine, CPU and every MAC must be there, because both ends of a
 * migration must use the same ones.
 */
export function validateVmSpec(input: unknown): VmSpec {
  const draft = parseVmSpec(input);
  const missing = [
    draft.machine === undefined ? 'machine' : undefined,
    draft.cpu === undefined ? 'cpu' : undefined,
    ...draft.nics.map((n, i) => (n.mac === undefined ? `nics[${i}].mac` : undefined)),
  ].filter((f): f is string => f !== undefined);
  if (missing.length > 0 || draft.machine === undefined || draft.cpu === undefined) {
    throw new UsageError(`VM ${draft.name}: the spec lacks ${missing.join(', ')}`, {
      hint: 'a running VM carries the machine, CPU and MACs its agent chose when it created it',
    });
  }
  return {
    ...draft,
    machine: draft.machine,
    cpu: draft.cpu,
    nics: draft.nics.map((n) => ({ bridge: n.bridge, mac: n.mac ?? '' })),
  };
}

/**
 * A spec as an older agent journalled it: the flat kernel form, no machine or
 * CPU. Those VMs ran with `-machine pc` and QEMU's default CPU, qemu64: the
 * same hardware is described here so they can still migrate.
 */
export function storedVmSpec(input: unknown): VmSpec {
  const record = (typeof input === 'object' && input !== null ? input : {}) as Record<string, unknown>;
  // Their disks were shared by assumption, and said so nowhere.
  const disks = Array.isArray(record.disks)
    ? record.disks.map((d: unknown) => ({ storage: 'shared', ...(d as object) }))
    : record.disks;
  return validateVmSpec({ machine: 'pc', cpu: 'qemu64', ...record, disks });
}

export function isKernelBoot(boot: BootSpec): boot is KernelBoot {
  return 'kernel' in boot;
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
