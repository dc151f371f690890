import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QmpCommandError } from '../errors.js';
import { isJobGone, leftoverMirrors, mirrorPrefix } from './disk-mirrors.js';

describe('what a migration left in the source QEMU (after a restart)', () => {
  const prefix = mirrorPrefix('1c43c5c2-aaaa-bbbb-cccc-000000000000');

  it('names jobs and nodes after the first 8 characters of the migration id', () => {
    assert.equal(prefix, 'vmf-1c43c5c2');
  });

  it("finds this migration's mirror jobs and NBD nodes, by disk, and nothing else", () => {
    const jobs = [
      { device: 'vmf-1c43c5c2-mirror0', type: 'mirror', len: 1, offset: 0, ready: false, status: 'running' },
      { device: 'vmf-99999999-mirror0', type: 'mirror', len: 1, offset: 0, ready: false, status: 'running' },
      { device: 'backup0', type: 'backup', len: 1, offset: 0, ready: false, status: 'running' },
    ];
    const nodes = [
      { 'node-name': 'vmf-1c43c5c2-nbd0' },
      { 'node-name': 'vmf-1c43c5c2-nbd2' },
      { 'node-name': 'vmf-1c43c5c2-nbd2x' },
      { 'node-name': 'vmf-99999999-nbd1' },
      { 'node-name': 'disk0-format' },
      { driver: 'file' },
    ];
    assert.deepEqual(leftoverMirrors(prefix, jobs, nodes), [0, 2]);
  });

  it('finds nothing in empty or unexpected answers', () => {
    assert.deepEqual(leftoverMirrors(prefix, [], []), []);
    assert.deepEqual(leftoverMirrors(prefix, {}, 'x'), []);
  });
});

describe('cancelling a job QEMU no longer has', () => {
  it('is not a problem when QEMU says the job is gone, and is one for any other refusal', () => {
    const gone = new QmpCommandError(
      'block-job-cancel',
      'DeviceNotActive',
      "Block job 'vmf-5eb86902-mirror0' not found",
    );
    assert.equal(isJobGone(gone), true);
    assert.equal(isJobGone(new QmpCommandError('block-job-cancel', 'GenericError', 'busy')), false);
    assert.equal(isJobGone(new Error('DeviceNotActive')), false);
  });
});
