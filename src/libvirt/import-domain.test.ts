import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { importLibvirtDomain, libvirtBytes } from './import-domain.js';
import { NOVA_DISK_BOOT_XML, NOVA_KERNEL_BOOT_XML } from './nova-domains.fixture.js';
import { parseXml } from './xml-parser.js';

const load = (xml: string, name?: string): ReturnType<typeof importLibvirtDomain> =>
  importLibvirtDomain(parseXml(xml, 'test.xml'), name !== undefined ? { name } : {});

/** The elements not carried over, without their reasons. */
const elements = (r: ReturnType<typeof importLibvirtDomain>): string[] =>
  r.notCarriedOver.map((l) => l.element);

describe('importing a libvirt domain (nova instance) as a vmferry spec', () => {
  it('carries a kernel-booted instance: memory, vCPUs, machine, kernel, initrd, cmdline, virtio disk, bridged NICs', () => {
    const r = load(NOVA_KERNEL_BOOT_XML);
    const dir = '/var/lib/nova/instances/5b0e8a4c-1f23-4e6d-9a7b-2c4d6e8f0a1b';
    assert.deepEqual(r.spec, {
      name: 'instance-0000002a',
      memoryMiB: 512,
      vcpus: 1,
      machine: 'pc-i440fx-7.2',
      boot: {
        kernel: `${dir}/kernel`,
        initrd: `${dir}/ramdisk`,
        append: 'root=/dev/vda console=tty0 console=ttyS0 no_timer_check',
      },
      disks: [{ path: `${dir}/disk`, format: 'qcow2', storage: 'shared' }],
      nics: [
        { bridge: 'qbr0c1d2e3f-4a', mac: 'fa:16:3e:12:ab:01' },
        { bridge: 'qbr5a6b7c8d-9e', mac: 'fa:16:3e:12:ab:02' },
      ],
    });
    assert.deepEqual(r.assumptions, [
      `disks[0] ${dir}/disk: marked storage "shared" (the same file at the same path on every host)`,
    ]);
  });

  it('lists everything of it that it leaves out, each with a reason', () => {
    const r = load(NOVA_KERNEL_BOOT_XML);
    assert.deepEqual(elements(r), [
      "os smbios mode='sysinfo'",
      'disk hdd (cdrom, file, bus ide)',
      "controller type='usb'",
      "interface type='bridge' mac fa:16:3e:12:ab:01 mtu",
      "serial type='pty' port 1",
      "graphics type='vnc'",
      'video',
      "memballoon model='virtio'",
      '7 PCI address(es)',
      "os boot dev='hd'",
      'uuid',
      'sysinfo',
      'on_reboot restart',
      'cputune',
      'metadata',
    ]);
    const reason = (element: string): string =>
      r.notCarriedOver.find((l) => l.element === element)?.reason ?? '';
    assert.match(reason('disk hdd (cdrom, file, bus ide)'), /config drive/);
    assert.match(reason("graphics type='vnc'"), /no display; use vmferry vm console/);
    assert.match(reason("serial type='pty' port 1"), /one serial port: the console/);
    assert.match(reason('on_reboot restart'), /stops when its guest reboots/);
  });

  it('carries a disk-booted instance as SeaBIOS booting its first disk, and lists its CPU features, network storage and OVS ports', () => {
    const r = load(NOVA_DISK_BOOT_XML, 'db-1');
    assert.deepEqual(r.spec, {
      name: 'db-1',
      memoryMiB: 2048,
      vcpus: 2,
      cpu: 'Haswell-noTSX-IBRS',
      boot: { firmware: 'bios', disk: 0 },
      disks: [
        {
          path: '/var/lib/nova/instances/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a/disk',
          format: 'raw',
          storage: 'shared',
        },
      ],
      nics: [],
    });
    assert.deepEqual(elements(r), [
      'currentMemory 1536 MiB',
      "os type machine='pc-i440fx-rhel7.6.0'",
      "os smbios mode='sysinfo'",
      'cpu feature require=vme disable=hle',
      "topology sockets='2' cores='1' threads='1'",
      'disk vdb (disk, network, bus virtio)',
      "controller type='usb' model='piix3-uhci'",
      "interface type='bridge' mac fa:16:3e:3e:b0:96",
      "interface type='vhostuser' mac fa:16:3e:3e:b0:97",
      "channel type='unix'",
      "input type='tablet' bus='usb'",
      "graphics type='spice'",
      'video',
      "memballoon model='virtio'",
      "rng model='virtio'",
      '1 PCI address(es)',
      'features vmport',
      "clock offset='utc' with pit, rtc, hpet timers",
      'uuid',
    ]);
    const reason = (element: string): string =>
      r.notCarriedOver.find((l) => l.element === element)?.reason ?? '';
    assert.match(reason("os type machine='pc-i440fx-rhel7.6.0'"), /distribution's own machine type/);
    assert.match(reason('disk vdb (disk, network, bus virtio)'), /network storage such as rbd/);
    assert.match(reason("interface type='bridge' mac fa:16:3e:3e:b0:96"), /Open vSwitch/);
    assert.match(reason('currentMemory 1536 MiB'), /all of its 2048 MiB/);
    assert.deepEqual(r.assumptions.at(-1), 'named db-1 (libvirt: instance-00000101)');
  });

  it('maps cpu modes: host-passthrough to host, host-model left to the agent', () => {
    const withCpu = (cpu: string): ReturnType<typeof importLibvirtDomain> =>
      load(NOVA_KERNEL_BOOT_XML.replace(/<cpu>[\s\S]*?<\/cpu>/, cpu));
    assert.equal(withCpu("<cpu mode='host-passthrough' check='none'/>").spec.cpu, 'host');
    const model = withCpu("<cpu mode='host-model' check='partial'><model fallback='allow'/></cpu>");
    assert.equal(model.spec.cpu, undefined);
    assert.ok(elements(model).includes("cpu mode='host-model'"));
  });

  it('reads memory in any libvirt unit', () => {
    const size = (text: string, unit?: string): number =>
      libvirtBytes({
        name: 'memory',
        attrs: unit !== undefined ? { unit } : {},
        children: [],
        text,
        line: 1,
      });
    assert.equal(size('524288'), 512 * 1024 ** 2);
    assert.equal(size('2', 'GiB'), 2 * 1024 ** 3);
    assert.equal(size('1', 'G'), 1024 ** 3);
    assert.equal(size('1000', 'MB'), 1e9);
    assert.throws(() => size('12', 'furlongs'), /<memory> \(line 1\) is not a size: "12" furlongs/);
  });

  it('refuses a domain it cannot boot, saying why and what it left out', () => {
    const cdromOnly = NOVA_KERNEL_BOOT_XML.replace(/<kernel>.*<\/cmdline>/s, '').replace(
      "<boot dev='hd'/>",
      "<boot dev='cdrom'/>",
    );
    assert.throws(
      () => load(cdromOnly),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message === 'instance-0000002a: no way to boot it in vmferry: it boots from cdrom' &&
        /graphics type='vnc': vmferry VMs have no display/.test(err.hint ?? ''),
    );
    assert.throws(
      () => load('<network><name>default</name></network>'),
      /the root element is <network>, not <domain>/,
    );
  });
});
