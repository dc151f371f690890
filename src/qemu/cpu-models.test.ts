import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import {
  cpuModelsFromQmp,
  defaultCpuModel,
  hostCpuFromCpuinfo,
  hostCpuMismatch,
  resolveCpuModel,
} from './cpu-models.js';

const kvmModels = cpuModelsFromQmp([
  { name: 'host', 'unavailable-features': [] },
  { name: 'qemu64', 'unavailable-features': [], 'migration-safe': true },
  { name: 'Haswell', 'unavailable-features': [], 'migration-safe': true },
  { name: 'Broadwell', 'unavailable-features': ['rdseed'], 'migration-safe': true },
  { name: 'Nehalem', 'unavailable-features': [], 'migration-safe': true },
]);

const cpuinfo = (model: string, flags: string): string =>
  `processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: ${model}\nmodel name\t: Intel(R) Xeon(R)\nstepping\t: 2\nflags\t\t: ${flags}\n\nprocessor\t: 1\nvendor_id\t: Other\n`;

describe('CPU models', () => {
  it('defaults to qemu64 under TCG and to the newest model the host has everything for under KVM', () => {
    assert.equal(defaultCpuModel('tcg', kvmModels), 'qemu64');
    assert.equal(defaultCpuModel('kvm', kvmModels), 'Haswell', 'Broadwell lacks rdseed here');
    assert.equal(defaultCpuModel('kvm', undefined), 'qemu64');
  });

  it('takes a model QEMU knows, and host only under KVM', () => {
    const tcg = { accelerator: 'tcg' as const, cpuModels: ['qemu64', 'Haswell', 'host'] };
    assert.equal(resolveCpuModel('web-1', 'Haswell', tcg), 'Haswell');
    assert.equal(resolveCpuModel('web-1', undefined, tcg), 'qemu64');
    assert.equal(resolveCpuModel('web-1', 'host', { ...tcg, accelerator: 'kvm' }), 'host');
    assert.throws(
      () => resolveCpuModel('web-1', 'host', tcg),
      (err: unknown) => err instanceof UsageError && /VM web-1: cpu "host" needs KVM/.test(err.message),
    );
    assert.throws(
      () => resolveCpuModel('web-1', 'Pentium9', tcg),
      (err: unknown) =>
        err instanceof UsageError &&
        /cpu "Pentium9" is not a CPU model this host's QEMU knows/.test(err.message),
    );
  });

  it('tells hosts with different CPUs apart for cpu "host", by model and flags', () => {
    const a = hostCpuFromCpuinfo(cpuinfo('85', 'fpu sse2 avx2'));
    assert.deepEqual(
      { vendor: a.vendor, family: a.family, model: a.model, stepping: a.stepping },
      { vendor: 'GenuineIntel', family: 6, model: 85, stepping: 2 },
    );
    assert.equal(
      hostCpuMismatch(a, hostCpuFromCpuinfo(cpuinfo('85', 'avx2 fpu sse2'))),
      undefined,
      'flag order does not matter',
    );
    assert.match(
      hostCpuMismatch(a, hostCpuFromCpuinfo(cpuinfo('85', 'fpu sse2'))) ?? '',
      /differ in flagsDigest/,
    );
    assert.match(
      hostCpuMismatch(a, hostCpuFromCpuinfo(cpuinfo('79', 'fpu sse2 avx2'))) ?? '',
      /differ in model/,
    );
    assert.match(hostCpuMismatch(a, undefined) ?? '', /did not report its CPU/);
  });
});
