import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { completeVmSpec, generateMac, type SpecDefaults } from './complete-vm-spec.js';
import { machineTypesFromQmp } from './machine-types.js';
import { normaliseMac, parseVmSpec, validateVmSpec } from './vm-spec.js';

const host: SpecDefaults = {
  accelerator: 'tcg',
  machines: machineTypesFromQmp([
    { name: 'pc-i440fx-7.2', alias: 'pc', 'is-default': true },
    { name: 'pc-q35-7.2', alias: 'q35' },
  ]),
  cpuModels: ['qemu64', 'Haswell'],
};

/** Random bytes from a list, so a test can make two NICs draw the same MAC. */
function bytesFrom(...chunks: number[][]): (n: number) => Buffer {
  let i = 0;
  return (n) => Buffer.from((chunks[i++ % chunks.length] ?? []).slice(0, n));
}

const draft = parseVmSpec({
  name: 'web-1',
  memoryMiB: 256,
  vcpus: 1,
  boot: { kernel: '/srv/images/vmlinuz' },
  disks: [],
  nics: [{ bridge: 'br0' }, { bridge: 'br0', mac: '52:54:00:00:00:02' }, { bridge: 'br1' }],
});

describe('completing a new VM spec on its first host', () => {
  it('fills in the versioned machine, the CPU model and each missing MAC, keeping the given ones', () => {
    const spec = completeVmSpec(draft, host, bytesFrom([0xab, 0xcd, 0xef], [0x00, 0x00, 0x02], [1, 2, 3]));
    assert.equal(spec.machine, 'pc-i440fx-7.2');
    assert.equal(spec.cpu, 'qemu64');
    assert.deepEqual(
      spec.nics.map((n) => n.mac),
      ['52:54:00:ab:cd:ef', '52:54:00:00:00:02', '52:54:00:01:02:03'],
      'a drawn MAC that another NIC already has is drawn again',
    );
    assert.deepEqual(
      validateVmSpec(JSON.parse(JSON.stringify(spec))),
      spec,
      'what is stored validates as complete',
    );
  });

  it('resolves an alias to the versioned type, so the destination gets the same machine', () => {
    assert.equal(completeVmSpec({ ...draft, machine: 'q35' }, host).machine, 'pc-q35-7.2');
  });

  it('refuses what this host cannot run, naming it', () => {
    assert.throws(
      () => completeVmSpec({ ...draft, cpu: 'host' }, host),
      (err: unknown) => err instanceof UsageError && /cpu "host" needs KVM/.test(err.message),
    );
  });

  it('generates locally administered unicast MACs in the 52:54:00 range', () => {
    for (let i = 0; i < 50; i++) {
      const mac = generateMac();
      assert.match(mac, /^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
      assert.equal(normaliseMac(mac), mac);
      assert.equal(parseInt(mac.slice(0, 2), 16) & 0b11, 0b10, 'locally administered, unicast');
    }
  });
});
