import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PlanError } from '../errors.js';
import {
  checkAccelerators,
  checkBridges,
  checkCpuModel,
  checkHostCpu,
  checkMachine,
  checkMemory,
  checkQemuVersion,
  checkSharedDisks,
  checkIncomingStream,
  preflightError,
} from './preflight.js';

describe('pre-flight checks', () => {
  it('passes hosts with the same accelerator', () => {
    const r = checkAccelerators({ name: 'a', accelerator: 'kvm' }, { name: 'b', accelerator: 'kvm' });
    assert.deepEqual(r, { check: 'accelerator', ok: true, message: 'both hosts run guests under KVM' });
    assert.equal(preflightError([r]), undefined);
  });

  it('refuses a KVM host to a TCG host, naming both and the fix', () => {
    const r = checkAccelerators(
      { name: 'host-a', accelerator: 'kvm' },
      { name: 'host-b', accelerator: 'tcg' },
    );
    assert.equal(r.ok, false);
    const err = preflightError([r]);
    assert.ok(err instanceof PlanError);
    assert.equal(
      err.message,
      'pre-flight check failed: accelerator: host-a runs guests under KVM and host-b under TCG: a guest cannot move between them',
    );
    assert.equal(
      err.hint,
      'migrate to a host with the same accelerator, or set the same [vmferry] accel on both hosts',
    );
  });

  it('reports every failed check together', () => {
    const err = preflightError([
      { check: 'memory', ok: false, message: 'too little', hint: 'free some' },
      { check: 'accelerator', ok: true, message: 'same' },
      { check: 'bridge', ok: false, message: 'br0 missing' },
    ]);
    assert.equal(err?.message, 'pre-flight checks failed: memory: too little; bridge: br0 missing');
    assert.equal(err?.hint, 'free some');
  });

  it('lets a VM with cpu "host" move only between hosts with the same CPU', () => {
    const cpu = {
      vendor: 'GenuineIntel',
      family: 6,
      model: 85,
      stepping: 7,
      modelName: 'Xeon',
      flagsDigest: 'aa',
    };
    const a = { name: 'host-a', accelerator: 'kvm' as const, hostCpu: cpu };
    const b = {
      name: 'host-b',
      accelerator: 'kvm' as const,
      hostCpu: { ...cpu, model: 106, modelName: 'Xeon 3' },
    };
    assert.equal(checkHostCpu('Haswell', a, b).ok, true);
    assert.equal(checkHostCpu('host', a, { ...b, hostCpu: cpu }).ok, true);
    const r = checkHostCpu('host', a, b);
    assert.equal(r.ok, false);
    assert.equal(
      preflightError([r])?.message,
      'pre-flight check failed: cpu: the VM has cpu "host" and cannot move from host-a to host-b: the hosts\' CPUs differ in model (Xeon vs Xeon 3)',
    );
  });
});

describe('pre-flight checks on the destination', () => {
  const capacity = { totalMiB: 8192, availableMiB: 6000, reservedMiB: 2000, freeForVmsMiB: 4000 };

  it('memory: fits within what is free after promises, else names all the figures', () => {
    assert.equal(checkMemory({ name: 'web', memoryMiB: 4000 }, 'b', capacity).ok, true);
    const r = checkMemory({ name: 'web', memoryMiB: 4001 }, 'b', capacity);
    assert.equal(r.ok, false);
    assert.equal(
      r.message,
      'b has 4000 MiB free for VMs (6000 MiB available, 2000 MiB promised to VMs, incoming migrations and the host), web needs 4001 MiB',
    );
  });

  it('machine and CPU model: offered by the destination QEMU, else named', () => {
    assert.equal(checkMachine('pc-i440fx-7.2', 'b', ['pc-i440fx-7.2', 'pc-q35-7.2']).ok, true);
    assert.deepEqual(checkMachine('pc-i440fx-8.2', 'b', ['pc-i440fx-7.2']), {
      check: 'machine',
      ok: false,
      message: "b's QEMU does not offer machine type pc-i440fx-8.2",
      hint: 'upgrade QEMU on b, or migrate to a host whose QEMU offers pc-i440fx-8.2',
    });
    assert.equal(checkCpuModel('EPYC-Milan', 'b', ['qemu64', 'EPYC']).ok, false);
    assert.equal(checkCpuModel('host', 'b', []).ok, true, 'cpu host is judged by checkHostCpu');
  });

  it('QEMU version: the destination may be newer or equal, not older', () => {
    const a = { name: 'a', qemuVersion: '7.2.22' };
    assert.equal(checkQemuVersion(a, { name: 'b', qemuVersion: '7.2.22' }).ok, true);
    assert.equal(checkQemuVersion(a, { name: 'b', qemuVersion: '8.0.0' }).ok, true);
    const older = checkQemuVersion(a, { name: 'b', qemuVersion: '7.2.9' });
    assert.equal(older.ok, false);
    assert.equal(older.message, 'QEMU 7.2.9 on b is older than 7.2.22 on a');
  });

  it('shared disks: missing, different size, different content and the same file', () => {
    const src = [
      { path: '/s/one.raw', sizeBytes: 100, fingerprint: 'f1' },
      { path: '/s/two.raw', sizeBytes: 100, fingerprint: 'f2' },
      { path: '/s/three.raw', sizeBytes: 100, fingerprint: 'f3' },
      { path: '/s/four.raw', sizeBytes: 100, fingerprint: 'f4' },
    ];
    const dst = [
      { path: '/s/one.raw', missing: 'ENOENT: no such file' },
      { path: '/s/two.raw', sizeBytes: 200, fingerprint: 'f2' },
      { path: '/s/three.raw', sizeBytes: 100, fingerprint: 'zz' },
      { path: '/s/four.raw', sizeBytes: 100, fingerprint: 'f4' },
    ];
    const r = checkSharedDisks(src, dst, 'b');
    assert.deepEqual(
      r.map((x) => [x.check, x.ok, x.message]),
      [
        ['disk 0', false, 'shared disk /s/one.raw is not there on b (ENOENT: no such file)'],
        [
          'disk 1',
          false,
          'shared disk /s/two.raw on b is not the same file as on the source: its size is 200 bytes there, 100 here',
        ],
        [
          'disk 2',
          false,
          'shared disk /s/three.raw on b is not the same file as on the source: its first or last MiB differs',
        ],
        ['disk 3', true, 'shared disk /s/four.raw is the same file on b'],
      ],
    );
  });

  it('bridges: each needed bridge once, present or not', () => {
    const r = checkBridges(['br0', 'br1', 'br0'], 'b', (x) => x === 'br0');
    assert.deepEqual(
      r.map((x) => [x.check, x.ok]),
      [
        ['bridge br0', true],
        ['bridge br1', false],
      ],
    );
    assert.equal(r[1]?.message, 'bridge br1 does not exist on b');
  });

  describe('the destination on the stream it is asked to take', () => {
    const policy = {
      host: 'host-b',
      permitCleartext: false,
      migrationAddress: '198.18.0.2',
      migrationAddressConfigured: false,
    };

    it('refuses clear text unless its own permit_cleartext allows it', () => {
      const refused = checkIncomingStream({ transport: 'native', tls: false }, policy);
      assert.equal(refused.ok, false);
      assert.equal(
        preflightError([refused])?.message,
        'pre-flight check failed: transport: host-b does not take guest memory in clear text (its [vmferry] permit_cleartext is off)',
      );
      const allowed = checkIncomingStream(
        { transport: 'native', tls: false },
        { ...policy, permitCleartext: true },
      );
      assert.deepEqual(allowed, {
        check: 'transport',
        ok: true,
        message: 'host-b takes the stream on 198.18.0.2 in clear text (permitted)',
      });
      assert.equal(checkIncomingStream({ transport: 'native', tls: true }, policy).ok, true);
    });

    it('lets QEMU listen on every interface only when an operator chose that address', () => {
      for (const migrationAddress of ['0.0.0.0', '::']) {
        const refused = checkIncomingStream(
          { transport: 'native', tls: true },
          { ...policy, migrationAddress },
        );
        assert.equal(refused.ok, false);
        assert.equal(
          refused.message,
          `host-b has no migration address: its agent listens on ${migrationAddress}, and its QEMU would listen on every interface`,
        );
        const chosen = checkIncomingStream(
          { transport: 'native', tls: true },
          { ...policy, migrationAddress, migrationAddressConfigured: true },
        );
        assert.equal(chosen.ok, true);
      }
    });

    it('takes a tunnel whatever the options: it is encrypted and reaches QEMU over a private socket', () => {
      const r = checkIncomingStream(
        { transport: 'tunnelled', tls: false },
        { ...policy, migrationAddress: '0.0.0.0' },
      );
      assert.equal(r.ok, true);
    });
  });
});
