import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { guestGenerationAddress, guestPageAddress, guestRamMiB } from './layout.js';
import { guestAppend, guestKernelPath } from './workload.js';

describe('guest workload parameters', () => {
  it('builds the kernel command line', () => {
    assert.equal(guestAppend({ memMiB: 256, dirtyMiBps: 64 }), 'mem=256 dirty=64');
    assert.equal(guestAppend({ memMiB: 64, dirtyMiBps: 0, verifyMiBps: 'max' }), 'mem=64 dirty=0');
    assert.equal(guestAppend({ memMiB: 64, dirtyMiBps: 0, verifyMiBps: 100 }), 'mem=64 dirty=0 verify=100');
  });

  it('refuses values the guest would not take, naming the option', () => {
    assert.throws(() => guestAppend({ memMiB: 0, dirtyMiBps: 0 }), /memMiB.*got 0/);
    assert.throws(() => guestAppend({ memMiB: 1.5, dirtyMiBps: 0 }), RangeError);
    assert.throws(() => guestAppend({ memMiB: 64, dirtyMiBps: -1 }), /dirtyMiBps/);
    assert.throws(() => guestAppend({ memMiB: 64, dirtyMiBps: 0, verifyMiBps: 0 }), /verifyMiBps/);
  });

  it('places pages and generations at fixed physical addresses', () => {
    assert.equal(guestPageAddress(0), 0x100_0000);
    assert.equal(guestPageAddress(12345), 0x100_0000 + 12345 * 4096);
    assert.equal(guestGenerationAddress(2), 0x40_0008);
    assert.throws(() => guestPageAddress(-1), RangeError);
    assert.equal(guestRamMiB(256), 288);
    assert.throws(() => guestRamMiB(5000), RangeError);
  });

  it('points at the guest build output', () => {
    const path = guestKernelPath();
    assert.match(path, /guest\/build\/vmferry-guest\.elf$/);
    assert.ok(existsSync(path.replace(/build\/vmferry-guest\.elf$/, 'Makefile')));
  });
});
