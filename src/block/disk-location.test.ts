import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { checkLocalDiskPath, destinationBacking, diskImagePath, isInside } from './disk-location.js';

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

  it('tells a path inside a folder from one beside it', () => {
    assert.ok(isInside('/i', '/i/web/disk'));
    assert.ok(isInside('/i/', '/i'));
    assert.ok(!isInside('/i', '/in/web'));
    assert.ok(!isInside('/i', '/etc'));
  });
});

describe('the backing image of a copied top layer', () => {
  const hosts = { sourceInstancesPath: '/a/instances', destinationInstancesPath: '/b/instances' };

  it('keeps a relative name: the destination looks beside its copy', () => {
    assert.deepEqual(
      destinationBacking({
        ...hosts,
        name: '../_base/base.qcow2',
        destinationTop: '/b/instances/web/disk.qcow2',
      }),
      { path: '/b/instances/_base/base.qcow2', name: '../_base/base.qcow2' },
    );
  });

  it('maps an absolute name inside the source instances_path to the same place under the destination', () => {
    assert.deepEqual(
      destinationBacking({
        ...hosts,
        name: '/a/instances/_base/base.qcow2',
        destinationTop: '/b/instances/web/disk.qcow2',
      }),
      { path: '/b/instances/_base/base.qcow2', name: '/b/instances/_base/base.qcow2' },
    );
  });

  it('keeps any other absolute name: an image folder both hosts have', () => {
    assert.deepEqual(
      destinationBacking({ ...hosts, name: '/srv/images/debian.qcow2', destinationTop: '/b/instances/w/d' }),
      { path: '/srv/images/debian.qcow2', name: '/srv/images/debian.qcow2' },
    );
  });
});
