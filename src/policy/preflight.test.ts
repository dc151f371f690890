import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PlanError } from '../errors.js';
import { checkAccelerators, checkHostCpu, preflightError } from './preflight.js';

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
