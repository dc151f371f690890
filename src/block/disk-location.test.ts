import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { destinationBacking, isInside } from './disk-location.js';

describe('paths', () => {
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
