import { diskImagePath } from './disk-paths.js';
import { machineFamily } from './machine-types.js';
import { isKernelBoot, ramSizeKiB, runFiles, MAX_DISKS, type LaunchOptions, type VmSpec } from './vm-spec.js';

/** The id of the RAM backend: source and destination must use the same one or QEMU refuses the stream. */
export const RAM_BACKEND_ID = 'vmf-ram';

/**
 * Device ids and PCI slots, derived from a device's place in the spec: both
 * ends of a migration build the same device tree from the same spec (QEMU
 * refuses a stream whose devices it cannot match).
 */
export function deviceIds(
  kind: 'disk' | 'nic',
  index: number,
): { id: string; backend: string; slot: string } {
  if (kind === 'disk') {
    return { id: `vmf-disk${index}`, backend: `vmf-drive${index}`, slot: `0x${(4 + index).toString(16)}` };
  }
  return {
    id: `vmf-nic${index}`,
    backend: `vmf-net${index}`,
    slot: `0x${(4 + MAX_DISKS + index).toString(16)}`,
  };
}

/** Where disk `i` of `spec` is on this host: a local disk under its instances_path. */
function imageOf(spec: VmSpec, i: number, options: LaunchOptions): string {
  const disk = spec.disks[i]!;
  if (disk.storage === 'local' && options.instancesPath === undefined) {
    throw new Error(`VM ${spec.name}: disks[${i}] is local but no instances_path was given`);
  }
  return diskImagePath(disk, options.instancesPath ?? '/');
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
  const bus = machineFamily(spec.machine) === 'q35' ? 'pcie.0' : 'pci.0';
  const argv = [
    '-name',
    `guest=${spec.name},debug-threads=on`,
    '-nodefaults',
    '-no-user-config',
    '-accel',
    accel,
    '-machine',
    `${spec.machine},memory-backend=${RAM_BACKEND_ID}`,
    '-cpu',
    spec.cpu,
    '-object',
    backendArg,
    '-m',
    size,
    '-smp',
    String(spec.vcpus),
  ];
  const boot = spec.boot;
  if (isKernelBoot(boot)) {
    argv.push('-kernel', boot.kernel);
    if (boot.initrd !== undefined) argv.push('-initrd', boot.initrd);
    if (boot.append !== undefined && boot.append !== '') argv.push('-append', boot.append);
  }
  for (const [i, disk] of spec.disks.entries()) {
    const ids = deviceIds('disk', i);
    const ro = disk.readonly === true ? ',read-only=on' : '';
    const bootIndex = !isKernelBoot(boot) && boot.disk === i ? ',bootindex=1' : '';
    argv.push(
      '-blockdev',
      `driver=file,node-name=${ids.backend}-file,filename=${imageOf(spec, i, options)}${ro}`,
      '-blockdev',
      `driver=${disk.format},node-name=${ids.backend},file=${ids.backend}-file${ro}`,
      '-device',
      `virtio-blk-pci,drive=${ids.backend},id=${ids.id},bus=${bus},addr=${ids.slot}${bootIndex}`,
    );
  }
  for (const [i, nic] of spec.nics.entries()) {
    const ids = deviceIds('nic', i);
    const tap = options.taps?.[i];
    if (tap === undefined) throw new Error(`no tap device given for nics[${i}] of VM ${spec.name}`);
    argv.push(
      '-netdev',
      `tap,id=${ids.backend},ifname=${tap},script=no,downscript=no`,
      '-device',
      // No option ROM: none is booted from, and its size would have to match on both ends.
      `virtio-net-pci,netdev=${ids.backend},id=${ids.id},mac=${nic.mac},bus=${bus},addr=${ids.slot},romfile=`,
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
