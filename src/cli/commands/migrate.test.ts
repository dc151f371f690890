import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../../errors.js';
import { overridesFromFlags } from './migrate.js';

describe('vmferry migrate: flags to per-migration overrides', () => {
  it('maps the block flags, the disk stall limit among them', () => {
    assert.deepEqual(overridesFromFlags({ block: true, keepSourceDisks: true, diskStallTimeout: 0 }), {
      block: 'all',
      keepSourceDisks: true,
      diskStallSeconds: 0,
    });
    assert.deepEqual(overridesFromFlags({ block: 'auto', stallTimeout: 60, diskStallTimeout: 15 }), {
      block: 'auto',
      stallSeconds: 60,
      diskStallSeconds: 15,
    });
  });

  it('refuses the block-only flags without --block, naming the flag', () => {
    for (const [flags, name] of [
      [{ keepSourceDisks: true }, '--keep-source-disks'],
      [{ diskStallTimeout: 10 }, '--disk-stall-timeout'],
    ] as const) {
      assert.throws(
        () => overridesFromFlags(flags),
        (err: unknown) => err instanceof UsageError && err.message === `${name} goes with --block`,
      );
    }
  });
});
