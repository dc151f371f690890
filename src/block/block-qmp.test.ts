import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  authzHostObject,
  blockExportAdd,
  blockExportDel,
  blockJobCancel,
  blockdevMirror,
  dirtyBytesByNode,
  nbdServerStart,
  nbdTargetNode,
  parseBlockJobs,
  sumDiskSamples,
  yankTargets,
} from './block-qmp.js';

describe('block migration QMP commands', () => {
  it('starts the NBD server with the legacy address form, with TLS and authz when given', () => {
    assert.deepEqual(nbdServerStart({ listen: { type: 'unix', path: '/run/n.sock' } }), {
      command: 'nbd-server-start',
      args: { addr: { type: 'unix', data: { path: '/run/n.sock' } } },
    });
    assert.deepEqual(
      nbdServerStart({
        listen: { type: 'inet', host: '198.18.0.2', port: 10809 },
        tlsCreds: 'vmf-tls-in',
        tlsAuthz: 'vmf-nbd-authz',
      }),
      {
        command: 'nbd-server-start',
        args: {
          addr: { type: 'inet', data: { host: '198.18.0.2', port: '10809' } },
          'tls-creds': 'vmf-tls-in',
          'tls-authz': 'vmf-nbd-authz',
        },
      },
    );
    assert.deepEqual(authzHostObject('z', 'host-a').args, {
      'qom-type': 'authz-list',
      id: 'z',
      policy: 'deny',
      rules: [
        { match: 'OU=host,CN=host-a', policy: 'allow', format: 'exact' },
        { match: 'CN=host-a,OU=host', policy: 'allow', format: 'exact' },
      ],
    });
  });

  it('exports writable, removes exports hard or safe', () => {
    assert.deepEqual(blockExportAdd({ id: 'e0', nodeName: 'vmf-drive0', name: 'disk0' }).args, {
      type: 'nbd',
      id: 'e0',
      'node-name': 'vmf-drive0',
      name: 'disk0',
      writable: true,
    });
    assert.deepEqual(blockExportDel('e0', true).args, { id: 'e0', mode: 'hard' });
    assert.deepEqual(blockExportDel('e0', false).args, { id: 'e0', mode: 'safe' });
  });

  it('attaches the export with the flat address form, checking the destination certificate name', () => {
    assert.deepEqual(
      nbdTargetNode({
        nodeName: 'm-nbd0',
        server: { type: 'inet', host: '198.18.0.2', port: 10809 },
        exportName: 'disk0',
        tlsCreds: 'vmf-tls-out',
        tlsHostname: 'host-b',
      }),
      {
        command: 'blockdev-add',
        args: {
          driver: 'nbd',
          'node-name': 'm-nbd0',
          server: { type: 'inet', host: '198.18.0.2', port: '10809' },
          export: 'disk0',
          'tls-creds': 'vmf-tls-out',
          'tls-hostname': 'host-b',
        },
      },
    );
    assert.deepEqual(
      nbdTargetNode({ nodeName: 'n', server: { type: 'unix', path: '/s' }, exportName: 'disk1' }).args.server,
      { type: 'unix', path: '/s' },
    );
  });

  it('mirrors write-blocking, full or top, never pivoting by itself', () => {
    const call = blockdevMirror({ jobId: 'j', device: 'vmf-drive0', target: 'n', sync: 'top', speed: 0 });
    assert.equal(call.command, 'blockdev-mirror');
    assert.equal(call.args['copy-mode'], 'write-blocking');
    assert.equal(call.args.sync, 'top');
    assert.equal(call.args['auto-finalize'], true);
    assert.deepEqual(blockJobCancel('j', false), {
      command: 'block-job-cancel',
      args: { device: 'j', force: false },
    });
  });
});

describe('cutting the connections of a migration that gives up', () => {
  it('yanks only the NBD nodes of this migration that QEMU registered', () => {
    const registered = [
      { type: 'block-node', 'node-name': 'vmf-1-nbd0' },
      { type: 'block-node', 'node-name': 'other-nbd0' },
      { type: 'chardev', id: 'serial0' },
      { type: 'migration' },
    ];
    assert.deepEqual(yankTargets(registered, ['vmf-1-nbd0', 'vmf-1-nbd1']), {
      command: 'yank',
      args: { instances: [{ type: 'block-node', 'node-name': 'vmf-1-nbd0' }] },
    });
  });

  it('asks nothing when none of them is registered (never connected, or already removed)', () => {
    assert.equal(yankTargets([{ type: 'migration' }], ['vmf-1-nbd0']), undefined);
    assert.equal(yankTargets({}, ['vmf-1-nbd0']), undefined);
  });
});

describe("reading QEMU's answers", () => {
  it('reads query-block-jobs', () => {
    assert.deepEqual(
      parseBlockJobs([
        { device: 'j0', len: 100, offset: 40, ready: false, status: 'running', type: 'mirror' },
        { device: 'j1', len: 10, offset: 10, ready: true, status: 'ready' },
      ]),
      [
        { id: 'j0', len: 100, offset: 40, ready: false, status: 'running' },
        { id: 'j1', len: 10, offset: 10, ready: true, status: 'ready' },
      ],
    );
    assert.deepEqual(parseBlockJobs({}), []);
  });

  it("counts a node's unnamed dirty bitmaps (a mirror's own), not the named ones", () => {
    const dirty = dirtyBytesByNode([
      {
        'node-name': 'vmf-drive0',
        'dirty-bitmaps': [
          { count: 65536, granularity: 65536 },
          { name: 'backup', count: 1 << 30 },
        ],
      },
      { 'node-name': 'vmf-drive0-file' },
    ]);
    assert.equal(dirty.get('vmf-drive0'), 65536);
    assert.equal(dirty.get('vmf-drive0-file'), undefined);
  });

  it('sums the disks of a migration', () => {
    assert.deepEqual(
      sumDiskSamples([
        { disk: 0, transferredBytes: 10, remainingBytes: 5, totalBytes: 15, dirtyBytes: 1, ready: true },
        { disk: 1, transferredBytes: 1, remainingBytes: 0, totalBytes: 1, dirtyBytes: 0, ready: false },
      ]),
      { transferredBytes: 11, remainingBytes: 5, totalBytes: 16, dirtyBytes: 1, ready: false },
    );
  });
});
