import { isAbsolute } from 'node:path';
import { UsageError } from '../errors.js';
import { machineFamily, normaliseMac, parseVmSpec, type VmSpecDraft } from '../qemu/index.js';
import { child, childrenNamed, type XmlElement } from './xml-parser.js';

/** Something of the libvirt domain that the vmferry spec does not have, and why. */
export interface NotCarriedOver {
  /** The element, as libvirt writes it: `graphics type='vnc'`, `disk hdd (cdrom)`. */
  element: string;
  reason: string;
}

/** A libvirt domain turned into a vmferry spec. */
export interface LibvirtImport {
  spec: VmSpecDraft;
  /** Everything the spec leaves out: read it before starting the VM. */
  notCarriedOver: NotCarriedOver[];
  /** What the import had to assume (say, that a disk is on shared storage). */
  assumptions: string[];
}

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  kb: 1e3,
  k: 1024,
  kib: 1024,
  mb: 1e6,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1e9,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1e12,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

/** A libvirt size (`<memory unit='KiB'>524288</memory>`, KiB when no unit) in bytes. */
export function libvirtBytes(el: XmlElement): number {
  const unit = (el.attrs.unit ?? 'KiB').toLowerCase();
  const factor = UNIT_BYTES[unit];
  const value = Number(el.text);
  if (factor === undefined || !/^\d+$/.test(el.text)) {
    throw new UsageError(`<${el.name}> (line ${el.line}) is not a size: ${JSON.stringify(el.text)} ${unit}`);
  }
  return value * factor;
}

/** Things every PC machine has or that only concern the host: nothing to carry, nothing lost. */
function implicitDevice(d: XmlElement): boolean {
  if (d.name === 'emulator') return true;
  if (d.name === 'controller') {
    const type = d.attrs.type;
    if (type === 'pci' && ['pci-root', 'pcie-root'].includes(d.attrs.model ?? '')) return true;
    if (type === 'ide' || type === 'sata') return true;
    if (type === 'usb' && d.attrs.model === 'none') return true;
  }
  if (d.name === 'input' && d.attrs.bus === 'ps2') return true;
  if (d.name === 'memballoon' && d.attrs.model === 'none') return true;
  return false;
}

function describe(el: XmlElement, keys: string[] = ['type']): string {
  const attrs = keys.filter((k) => el.attrs[k] !== undefined).map((k) => `${k}='${el.attrs[k] ?? ''}'`);
  return [el.name, ...attrs].join(' ');
}

const DEVICE_REASONS: Record<string, string> = {
  graphics: 'vmferry VMs have no display; use vmferry vm console',
  video: 'vmferry VMs have no display adapter',
  sound: 'vmferry VMs have no sound device',
  input: 'vmferry VMs have no USB or virtio input devices (the PC machine keeps its PS/2 ones)',
  controller: 'vmferry VMs have only the controllers the machine type brings',
  memballoon: 'vmferry VMs have no balloon device: the guest keeps all its memory',
  rng: 'vmferry VMs have no virtio-rng device',
  channel: 'vmferry VMs have no virtio-serial channels (no guest agent)',
  hostdev: 'a passed-through host device cannot move to another host',
  watchdog: 'vmferry VMs have no watchdog device',
  tpm: 'vmferry VMs have no TPM',
  smartcard: 'vmferry VMs have no smartcard reader',
  redirdev: 'vmferry VMs have no USB redirection',
  filesystem: 'vmferry VMs have no shared host folders',
  panic: 'vmferry VMs have no pvpanic device',
  parallel: 'vmferry VMs have no parallel port',
};

/** What an import could not carry over, and what it assumed: collected as it goes. */
interface ImportNotes {
  readonly lost: NotCarriedOver[];
  readonly assumptions: string[];
  readonly drop: (element: string, reason: string) => void;
}

/**
 * Turns a libvirt domain (as `virsh dumpxml` prints it for a nova instance)
 * into a vmferry spec: memory, vCPUs, machine type, CPU model, kernel or disk
 * boot, file disks on virtio, bridged virtio NICs with their MACs. Everything
 * else is listed in notCarriedOver, never dropped silently.
 */
export function importLibvirtDomain(root: XmlElement, options: { name?: string } = {}): LibvirtImport {
  if (root.name !== 'domain') throw new UsageError(`the root element is <${root.name}>, not <domain>`);
  const lost: NotCarriedOver[] = [];
  const notes: ImportNotes = {
    lost,
    assumptions: [],
    drop: (element, reason) => void lost.push({ element, reason }),
  };
  const libvirtName = child(root, 'name')?.text;
  const name = options.name ?? libvirtName;
  if (name === undefined || name === '')
    throw new UsageError('the domain has no <name>: give one with --name');
  const size = importSize(root, notes);
  const spec: Record<string, unknown> = { name, ...size };
  const os = child(root, 'os');
  const machine = importMachine(os, notes);
  if (machine !== undefined) spec.machine = machine;
  const cpu = importCpu(child(root, 'cpu'), size.vcpus, notes);
  if (cpu !== undefined) spec.cpu = cpu;
  const { disks, bootDisk, nics } = importDevices(child(root, 'devices'), notes);
  spec.boot = importBoot(os, name, disks.length, bootDisk, notes);
  spec.disks = disks;
  spec.nics = nics;
  dropDomainSettings(root, notes);
  if (libvirtName !== undefined && libvirtName !== name)
    notes.assumptions.push(`named ${name} (libvirt: ${libvirtName})`);
  return { spec: parseVmSpec(spec), notCarriedOver: lost, assumptions: notes.assumptions };
}

/** Memory (rounded up to MiB) and vCPUs; a balloon or vCPU hotplug is not carried. */
function importSize(root: XmlElement, notes: ImportNotes): { memoryMiB: number; vcpus: number } {
  const memoryEl = child(root, 'memory');
  if (memoryEl === undefined) throw new UsageError('the domain has no <memory>');
  const memoryBytes = libvirtBytes(memoryEl);
  const memoryMiB = Math.ceil(memoryBytes / 1024 ** 2);
  if (memoryMiB * 1024 ** 2 !== memoryBytes) {
    notes.assumptions.push(
      `memory ${memoryEl.text} ${memoryEl.attrs.unit ?? 'KiB'} rounded up to ${memoryMiB} MiB`,
    );
  }
  const current = child(root, 'currentMemory');
  if (current !== undefined && libvirtBytes(current) < memoryBytes) {
    notes.drop(
      `currentMemory ${current.text} ${current.attrs.unit ?? 'KiB'}`,
      `vmferry has no balloon: the guest gets all of its ${memoryMiB} MiB`,
    );
  }
  const vcpuEl = child(root, 'vcpu');
  const vcpus = vcpuEl === undefined ? 1 : Number(vcpuEl.text);
  if (vcpuEl?.attrs.current !== undefined && Number(vcpuEl.attrs.current) !== vcpus) {
    notes.drop(
      `vcpu current='${vcpuEl.attrs.current}'`,
      `vmferry has no vCPU hotplug: the guest gets ${vcpus} vCPUs`,
    );
  }
  return { memoryMiB, vcpus };
}

/** <os>: the machine type when vmferry can build it; firmware and other settings are not carried. */
function importMachine(os: XmlElement | undefined, notes: ImportNotes): string | undefined {
  const { drop } = notes;
  const type = child(os, 'type');
  if (type !== undefined && type.text !== 'hvm')
    drop(`os type ${type.text}`, 'vmferry runs full (hvm) machines only');
  const arch = type?.attrs.arch;
  if (arch !== undefined && arch !== 'x86_64') {
    drop(`os type arch='${arch}'`, 'vmferry builds x86_64 machines (qemu-system-x86_64)');
  }
  const machine = machineOf(type?.attrs.machine, notes);
  if (child(os, 'loader') !== undefined) {
    drop('os loader', 'vmferry boots through SeaBIOS or a kernel, not UEFI firmware');
  }
  for (const extra of ['smbios', 'bootmenu', 'bios', 'nvram', 'acpi', 'initarg', 'init']) {
    const el = child(os, extra);
    if (el !== undefined) drop(`os ${describe(el, ['mode', 'enable'])}`, 'vmferry does not set it');
  }
  return machine;
}

/** The machine type when vmferry can build it (a versioned pc-i440fx or pc-q35, or their aliases). */
function machineOf(machine: string | undefined, notes: ImportNotes): string | undefined {
  if (machine === undefined) return undefined;
  if (/^pc-(i440fx|q35)-\d+\.\d+$/.test(machine) || machine === 'pc' || machine === 'q35') return machine;
  notes.drop(
    `os type machine='${machine}'`,
    machineFamily(machine.replace(/-[^-]*$/, '-1.0')) !== undefined
      ? "a distribution's own machine type, unknown to upstream QEMU: the agent picks the newest versioned one of the family (the guest sees newer virtual hardware)"
      : 'vmferry builds pc-i440fx-* and pc-q35-* machines only: the agent picks one',
  );
  return undefined;
}

/** <cpu>: the named model, or host for host-passthrough; features, topology and NUMA are not carried. */
function importCpu(cpu: XmlElement | undefined, vcpus: number, notes: ImportNotes): string | undefined {
  const { drop } = notes;
  const mode = cpu?.attrs.mode ?? (child(cpu, 'model') !== undefined ? 'custom' : undefined);
  let model: string | undefined;
  if (mode === 'host-passthrough') model = 'host';
  else if (mode === 'host-model' || mode === 'maximum') {
    drop(
      `cpu mode='${mode}'`,
      'vmferry needs a named CPU model; the agent picks one (qemu64 under TCG, a named model under KVM)',
    );
  } else if (mode === 'custom') {
    const named = child(cpu, 'model')?.text;
    if (named !== undefined && named !== '') model = named;
  }
  const cpuFeatures = childrenNamed(cpu, 'feature');
  if (cpuFeatures.length > 0) {
    drop(
      `cpu feature ${cpuFeatures.map((f) => `${f.attrs.policy ?? 'require'}=${f.attrs.name ?? '?'}`).join(' ')}`,
      'vmferry gives the named model as QEMU defines it, without extra or removed features',
    );
  }
  const topology = child(cpu, 'topology');
  if (topology !== undefined && vcpus > 1) {
    drop(
      describe(topology, ['sockets', 'dies', 'cores', 'threads']),
      `vmferry gives QEMU a vCPU count only (-smp ${vcpus}): QEMU lays them out`,
    );
  }
  if (child(cpu, 'numa') !== undefined) drop('cpu numa', 'vmferry VMs have one NUMA node');
  return model;
}

/** <devices>: file disks and bridged NICs on virtio, one serial console; the rest is not carried. */
function importDevices(
  devices: XmlElement | undefined,
  notes: ImportNotes,
): { disks: Record<string, unknown>[]; bootDisk: number | undefined; nics: Record<string, unknown>[] } {
  const disks: Record<string, unknown>[] = [];
  const nics: Record<string, unknown>[] = [];
  let bootDisk: number | undefined;
  let serials = 0;
  let pciAddresses = 0;
  for (const d of devices?.children ?? []) {
    pciAddresses += d.children.filter((c) => c.name === 'address' && c.attrs.type === 'pci').length;
    if (implicitDevice(d)) continue;
    const target = child(d, 'target');
    if (d.name === 'disk') {
      if (importDisk(d, disks, notes) === 'boots') bootDisk = disks.length - 1;
    } else if (d.name === 'interface') {
      importNic(d, nics, notes);
    } else if (d.name === 'serial') {
      serials++;
      if (serials > 1)
        notes.drop(
          describe(d) + ` port ${target?.attrs.port ?? '?'}`,
          'vmferry VMs have one serial port: the console',
        );
    } else if (d.name === 'console') {
      // The first serial port seen once more, as libvirt lists it.
      if ((target?.attrs.type ?? 'serial') === 'serial' && (target?.attrs.port ?? '0') === '0') continue;
      notes.drop(
        describe(d) + ` target ${target?.attrs.type ?? '?'}`,
        'vmferry VMs have one console: the first serial port',
      );
    } else {
      notes.drop(
        describe(d, ['type', 'model', 'bus']),
        DEVICE_REASONS[d.name] ?? 'vmferry VMs have no such device',
      );
    }
  }
  if (pciAddresses > 0)
    notes.drop(`${pciAddresses} PCI address(es)`, 'vmferry places its devices at its own PCI slots');
  return { disks, bootDisk, nics };
}

/** A <disk>: added to `disks` when vmferry can attach it ('boots' when libvirt boots it first). */
function importDisk(
  d: XmlElement,
  disks: Record<string, unknown>[],
  notes: ImportNotes,
): 'boots' | 'added' | 'lost' {
  const { drop } = notes;
  const target = child(d, 'target');
  const label = `disk ${target?.attrs.dev ?? '?'} (${d.attrs.device ?? 'disk'}, ${d.attrs.type ?? '?'}${target?.attrs.bus !== undefined ? `, bus ${target.attrs.bus}` : ''})`;
  const format = child(d, 'driver')?.attrs.type ?? 'raw';
  const file = child(d, 'source')?.attrs.file;
  if ((d.attrs.device ?? 'disk') !== 'disk') {
    drop(
      label,
      `vmferry attaches disks only (a ${d.attrs.device ?? '?'} such as nova's config drive is not carried)`,
    );
  } else if (d.attrs.type !== 'file' || file === undefined) {
    drop(
      label,
      'vmferry attaches image files only (no block devices or network storage such as rbd or iscsi)',
    );
  } else if (target?.attrs.bus !== undefined && target.attrs.bus !== 'virtio') {
    drop(
      label,
      `vmferry attaches disks as virtio-blk only; on bus ${target.attrs.bus} the guest would not find it where it was`,
    );
  } else if (format !== 'raw' && format !== 'qcow2') {
    drop(label, `vmferry opens raw and qcow2 images only, not ${format}`);
  } else if (!isAbsolute(file) || file.includes(',')) {
    drop(label, 'its path must be absolute and without commas');
  } else {
    disks.push({
      path: file,
      format,
      storage: 'shared',
      ...(child(d, 'readonly') !== undefined ? { readonly: true } : {}),
    });
    notes.assumptions.push(
      `disks[${disks.length - 1}] ${file}: marked storage "shared" (the same file at the same path on every host)`,
    );
    return child(d, 'boot')?.attrs.order === '1' ? 'boots' : 'added';
  }
  return 'lost';
}

/** An <interface>: added to `nics` when it is a virtio NIC on a Linux bridge. */
function importNic(d: XmlElement, nics: Record<string, unknown>[], notes: ImportNotes): void {
  const { drop } = notes;
  const mac = child(d, 'mac')?.attrs.address;
  const label = `interface type='${d.attrs.type ?? '?'}'${mac !== undefined ? ` mac ${mac}` : ''}`;
  const bridge = child(d, 'source')?.attrs.bridge;
  const model = child(d, 'model')?.attrs.type;
  if (d.attrs.type !== 'bridge' || bridge === undefined) {
    drop(label, 'vmferry attaches NICs to a Linux bridge (type bridge) only');
  } else if (child(d, 'virtualport') !== undefined) {
    drop(label, `an Open vSwitch port on ${bridge}: vmferry puts tap devices on Linux bridges only`);
  } else if (model !== undefined && model !== 'virtio') {
    drop(label, `vmferry gives virtio-net NICs only, not ${model}`);
  } else if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(bridge)) {
    drop(label, `bridge ${bridge} is not a Linux interface name vmferry accepts`);
  } else if (mac !== undefined && normaliseMac(mac) === undefined) {
    drop(label, `${mac} is not a unicast MAC address`);
  } else {
    nics.push({ bridge, ...(mac !== undefined ? { mac: normaliseMac(mac) } : {}) });
    const lostParts = ['mtu', 'bandwidth', 'vlan', 'filterref', 'tune', 'coalesce'].filter(
      (part) => child(d, part) !== undefined,
    );
    if (lostParts.length > 0) {
      drop(
        `${label} ${lostParts.join(', ')}`,
        'vmferry puts a plain tap device on the bridge, without these settings',
      );
    }
  }
}

/** How it boots: its kernel, else the disk libvirt boots; neither is a UsageError naming what was lost. */
function importBoot(
  os: XmlElement | undefined,
  name: string,
  diskCount: number,
  bootDisk: number | undefined,
  notes: ImportNotes,
): Record<string, unknown> {
  const kernel = child(os, 'kernel')?.text;
  if (kernel !== undefined && kernel !== '') {
    const initrd = child(os, 'initrd')?.text;
    const cmdline = child(os, 'cmdline')?.text;
    for (const b of childrenNamed(os, 'boot'))
      notes.drop(`os ${describe(b, ['dev'])}`, 'the kernel boots directly; no boot device order');
    return {
      kernel,
      ...(initrd !== undefined && initrd !== '' ? { initrd } : {}),
      ...(cmdline !== undefined && cmdline !== '' ? { append: cmdline } : {}),
    };
  }
  const order = childrenNamed(os, 'boot').map((b) => b.attrs.dev ?? '');
  const first = order[0] ?? (bootDisk !== undefined ? 'hd' : undefined);
  if (first === 'hd' && diskCount > 0) {
    for (const other of order.slice(1))
      notes.drop(`os boot dev='${other}'`, 'vmferry boots one disk; no fallback device');
    return { firmware: 'bios', disk: bootDisk ?? 0 };
  }
  throw new UsageError(
    `${name}: no way to boot it in vmferry: ${first === undefined ? 'no kernel and no boot device' : first === 'hd' ? 'it boots from disk, and none of its disks could be carried over' : `it boots from ${first}`}`,
    { hint: notes.lost.map((l) => `${l.element}: ${l.reason}`).join('; ') || undefined },
  );
}

/** Whole-domain settings vmferry does not apply: features, clock, UUID, SMBIOS, reboot, tuning, metadata. */
function dropDomainSettings(root: XmlElement, notes: ImportNotes): void {
  const { drop } = notes;
  for (const f of child(root, 'features')?.children ?? []) {
    if (f.name === 'acpi' || f.name === 'apic') continue;
    drop(`features ${f.name}`, "vmferry leaves it at QEMU's default for the machine type");
  }
  const clock = child(root, 'clock');
  if (clock !== undefined && ((clock.attrs.offset ?? 'utc') !== 'utc' || clock.children.length > 0)) {
    drop(
      `clock offset='${clock.attrs.offset ?? 'utc'}'${clock.children.length > 0 ? ` with ${clock.children.map((t) => t.attrs.name ?? t.name).join(', ')} timers` : ''}`,
      "vmferry keeps QEMU's default clock (UTC) and timers",
    );
  }
  if (child(root, 'uuid') !== undefined)
    drop('uuid', 'QEMU gets no -uuid: the guest sees another system UUID');
  if (child(root, 'sysinfo') !== undefined)
    drop('sysinfo', "vmferry sets no SMBIOS strings (nova's instance id in them is lost)");
  if (child(root, 'on_reboot')?.text === 'restart') {
    drop('on_reboot restart', 'a vmferry VM stops when its guest reboots (QEMU -no-reboot)');
  }
  for (const tuning of ['cputune', 'numatune', 'memtune', 'blkiotune', 'memoryBacking', 'iothreads']) {
    if (child(root, tuning) !== undefined) drop(tuning, 'host-side tuning vmferry does not apply');
  }
  if (child(root, 'metadata') !== undefined) drop('metadata', 'not part of the machine: it stays with nova');
}
