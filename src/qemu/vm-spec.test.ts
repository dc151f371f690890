import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { normaliseMac, parseVmSpec, storedVmSpec, validateVmSpec } from './vm-spec.js';

/** The shape issue 11 asks to work as written. */
const issueExample = {
  memoryMiB: 256,
  vcpus: 1,
  boot: { kernel: '/srv/images/vmlinuz', initrd: '/srv/images/initrd.img', append: 'console=ttyS0' },
  disks: [{ path: '/srv/shared/web-1.raw', format: 'raw', storage: 'shared' }],
  nics: [{ bridge: 'br0' }],
};

const base = { name: 'web-1', ...issueExample };

function rejects(input: unknown, message: RegExp, parse: (i: unknown) => unknown = parseVmSpec): void {
  assert.throws(
    () => parse(input),
    (err: unknown) => {
      assert.ok(err instanceof UsageError, String(err));
      assert.equal(err.code, 'VMF_ERR_USAGE');
      assert.match(err.message, message);
      return true;
    },
  );
}

describe('VM spec parsing', () => {
  it("takes the issue's example as written, leaving machine, CPU and MAC to the agent", () => {
    const draft = parseVmSpec(base);
    assert.deepEqual(draft, {
      name: 'web-1',
      memoryMiB: 256,
      vcpus: 1,
      boot: { kernel: '/srv/images/vmlinuz', initrd: '/srv/images/initrd.img', append: 'console=ttyS0' },
      disks: [{ path: '/srv/shared/web-1.raw', format: 'raw', storage: 'shared' }],
      nics: [{ bridge: 'br0' }],
    });
  });

  it('takes the flat {kernel, append} form of the first callers as boot: {kernel, append}', () => {
    const draft = parseVmSpec({
      name: 'g',
      memoryMiB: 64,
      vcpus: 1,
      kernel: '/opt/guest.elf',
      append: 'mem=32',
    });
    assert.deepEqual(draft.boot, { kernel: '/opt/guest.elf', append: 'mem=32' });
    assert.deepEqual([draft.disks, draft.nics], [[], []]);
  });

  it('takes disk boot through SeaBIOS, naming a disk that exists', () => {
    const draft = parseVmSpec({ ...base, boot: { firmware: 'bios', disk: 0 } });
    assert.deepEqual(draft.boot, { firmware: 'bios', disk: 0 });
  });

  it('takes a local disk by its path under instances_path', () => {
    const draft = parseVmSpec({
      ...base,
      disks: [{ path: 'web-1/disk.qcow2', format: 'qcow2', storage: 'local' }],
    });
    assert.deepEqual(draft.disks, [{ path: 'web-1/disk.qcow2', format: 'qcow2', storage: 'local' }]);
  });

  it('writes MACs in lower case and keeps a memory backend', () => {
    const draft = parseVmSpec({
      ...base,
      nics: [{ bridge: 'br0', mac: '52:54:00:AB:CD:EF' }],
      memoryBackend: { kind: 'file', path: '/dev/shm/web-1.ram', share: true },
    });
    assert.equal(draft.nics[0]?.mac, '52:54:00:ab:cd:ef');
    assert.deepEqual(draft.memoryBackend, { kind: 'file', path: '/dev/shm/web-1.ram', share: true });
  });

  it('names the field and the value of every bad input', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base, name: '../etc' }, /invalid VM name "\.\.\/etc"/],
      [{ ...base, memoryMiB: 8 }, /VM web-1: memoryMiB must be an integer from 16 to \d+, got 8/],
      [{ ...base, vcpus: 1.5 }, /vcpus must be an integer from 1 to 256, got 1\.5/],
      [{ ...base, vcpus: undefined }, /vcpus must be an integer from 1 to 256, got nothing/],
      [{ ...base, machine: 'pc i440fx' }, /machine must be a QEMU machine type .*, got "pc i440fx"/],
      [{ ...base, cpu: '' }, /cpu must be a QEMU CPU model .*, got ""/],
      [
        { ...base, boot: { kernel: 'vmlinuz' } },
        /boot\.kernel must be an absolute path without commas, got "vmlinuz"/,
      ],
      [
        { ...base, boot: { kernel: '/k', initrd: 'initrd.img' } },
        /boot\.initrd must be an absolute path .*, got "initrd\.img"/,
      ],
      [{ ...base, boot: { kernel: '/k', append: 'a\nb' } }, /boot\.append must be a single-line string/],
      [{ ...base, boot: { kernel: '/k', cmdline: 'x' } }, /unknown field boot\.cmdline/],
      [{ ...base, boot: { firmware: 'uefi', disk: 0 } }, /boot\.firmware must be "bios", got "uefi"/],
      [{ ...base, boot: { firmware: 'bios', disk: 1 } }, /boot\.disk must be an integer from 0 to 0, got 1/],
      [
        { ...base, disks: [], boot: { firmware: 'bios', disk: 0 } },
        /boot\.disk names a disk, but the VM has none, got 0/,
      ],
      [{ ...base, boot: undefined }, /boot is missing/],
      [{ ...base, kernel: '/k' }, /either boot or the flat kernel\/append fields, not both/],
      [
        { ...base, disks: [{ path: '/a,b', format: 'raw', storage: 'shared' }] },
        /disks\[0\]\.path must be an absolute path without commas, got "\/a,b"/,
      ],
      [
        { ...base, disks: [{ path: '/a', format: 'vmdk', storage: 'shared' }] },
        /disks\[0\]\.format must be "raw" or "qcow2", got "vmdk"/,
      ],
      [
        { ...base, disks: [{ path: '/a', format: 'raw' }] },
        /disks\[0\]\.storage must be "shared" or "local", got nothing/,
      ],
      [
        { ...base, disks: [{ path: '/a', format: 'raw', storage: 'local' }] },
        /disks\[0\]\.path must be a path relative to instances_path, without "\.\.", "\." or empty parts, and without commas, got "\/a"/,
      ],
      [
        { ...base, disks: [{ path: 'web/../../etc/shadow', format: 'raw', storage: 'local' }] },
        /disks\[0\]\.path must be a path relative to instances_path.*, got "web\/\.\.\/\.\.\/etc\/shadow"/,
      ],
      [
        { ...base, disks: [{ path: '/a', format: 'raw', storage: 'shared', readonly: 'yes' }] },
        /disks\[0\]\.readonly must be true or false, got "yes"/,
      ],
      [{ ...base, disks: 'a' }, /disks must be a list, got "a"/],
      [
        { ...base, nics: [{ bridge: 'a-bridge-name-too-long' }] },
        /nics\[0\]\.bridge must be a Linux bridge name .*, got "a-bridge-name-too-long"/,
      ],
      [
        { ...base, nics: [{ bridge: 'br0', mac: '01:00:5e:00:00:01' }] },
        /nics\[0\]\.mac must be a unicast MAC address .*, got "01:00:5e:00:00:01"/,
      ],
      [
        { ...base, nics: [{ bridge: 'br0', mac: '52:54:00:zz:00:01' }] },
        /nics\[0\]\.mac must be a unicast MAC .*, got "52:54:00:zz:00:01"/,
      ],
      [
        {
          ...base,
          nics: [
            { bridge: 'br0', mac: '52:54:00:00:00:01' },
            { bridge: 'br1', mac: '52:54:00:00:00:01' },
          ],
        },
        /nics\[1\]\.mac is already the MAC of another NIC of this VM, got "52:54:00:00:00:01"/,
      ],
      [{ ...base, nics: [{ bridge: 'br0', model: 'e1000' }] }, /unknown field nics\[0\]\.model/],
      [{ ...base, memoryMib: 256 }, /unknown field memoryMib/],
      [
        { ...base, memoryBackend: { kind: 'hugepages' } },
        /memoryBackend\.kind must be "ram" or "file", got "hugepages"/,
      ],
      [
        { ...base, memoryBackend: { kind: 'file', path: 'ram' } },
        /memoryBackend\.path must be an absolute path/,
      ],
    ];
    for (const [input, message] of cases) rejects(input, message);
  });

  it('asks a complete spec (from a peer or the journal) for machine, CPU and every MAC', () => {
    rejects(base, /VM web-1: the spec lacks machine, cpu, nics\[0\]\.mac/, validateVmSpec);
    const complete = validateVmSpec({
      ...base,
      machine: 'pc-i440fx-7.2',
      cpu: 'qemu64',
      nics: [{ bridge: 'br0', mac: '52:54:00:12:34:56' }],
    });
    assert.equal(complete.machine, 'pc-i440fx-7.2');
    assert.deepEqual(complete.nics, [{ bridge: 'br0', mac: '52:54:00:12:34:56' }]);
  });

  it('reads a VM an older agent journalled (flat kernel form, disks without storage) as the machine it ran on', () => {
    const spec = storedVmSpec({
      name: 'old',
      memoryMiB: 160,
      vcpus: 1,
      kernel: '/opt/guest.elf',
      append: 'mem=128',
      disks: [{ path: '/srv/old.raw', format: 'raw', readonly: false }],
      memoryBackend: { kind: 'ram' },
    });
    assert.equal(spec.machine, 'pc');
    assert.equal(spec.cpu, 'qemu64');
    assert.deepEqual(spec.boot, { kernel: '/opt/guest.elf', append: 'mem=128' });
    assert.deepEqual(spec.disks, [{ path: '/srv/old.raw', format: 'raw', storage: 'shared' }]);
  });

  it('accepts only unicast MACs', () => {
    assert.equal(normaliseMac('FA:16:3E:7E:BB:A3'), 'fa:16:3e:7e:bb:a3');
    assert.equal(normaliseMac('ff:ff:ff:ff:ff:ff'), undefined);
    assert.equal(normaliseMac('52-54-00-12-34-56'), undefined);
  });
});
