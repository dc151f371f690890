import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { checkLocalDiskPath, diskImagePath } from './disk-paths.js';

describe('local disk paths', () => {
  it('resolves a local disk under instances_path and leaves a shared one where it is', () => {
    assert.equal(
      diskImagePath({ path: 'web-1/disk.qcow2', storage: 'local' }, '/var/lib/nova/instances/'),
      '/var/lib/nova/instances/web-1/disk.qcow2',
    );
    assert.equal(diskImagePath({ path: '/nfs/web-1.qcow2', storage: 'shared' }, '/x'), '/nfs/web-1.qcow2');
  });

  it('refuses a path that could leave instances_path, naming the value', () => {
    for (const bad of ['/etc/shadow', '../etc/shadow', 'web/../../x', 'web//disk', './disk', 'a,b', '']) {
      assert.throws(
        () => checkLocalDiskPath(bad, 'disks[0].path'),
        (err: unknown) =>
          err instanceof UsageError &&
          err.code === 'VMF_ERR_USAGE' &&
          err.message.startsWith('disks[0].path of a local disk must be relative to instances_path') &&
          err.message.includes(JSON.stringify(bad)),
        bad,
      );
    }
    assert.equal(checkLocalDiskPath('web-1/disk.qcow2'), 'web-1/disk.qcow2');
  });
});
