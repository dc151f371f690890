import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkConfig, optionsFrom, type ResolvedOptions } from '../config/index.js';
import { blockRequest, reachableUri } from './outgoing.js';

describe('reachableUri', () => {
  it('replaces a wildcard listen address by the address the destination agent is reached at', () => {
    assert.equal(reachableUri('tcp:0.0.0.0:49152', '198.18.0.2'), 'tcp:198.18.0.2:49152');
    assert.equal(reachableUri('tcp:[::]:49152', 'fd00::2'), 'tcp:[fd00::2]:49152');
  });

  it('keeps a specific address, and keeps the URI when the agent was reached over a unix socket', () => {
    assert.equal(reachableUri('tcp:198.18.0.9:49152', '198.18.0.2'), 'tcp:198.18.0.9:49152');
    assert.equal(reachableUri('tcp:0.0.0.0:49152', undefined), 'tcp:0.0.0.0:49152');
  });
});

describe('blockRequest: whether a migration copies the local disks', () => {
  const fromFile = (text: string): ResolvedOptions => {
    const c = checkConfig(text, '/etc/nova/nova.conf');
    assert.ok(c.options && c.ok, c.errors.map((e) => e.message).join('\n'));
    return c.options;
  };

  it('copies when asked for, every local disk with --block, per disk with --block auto', () => {
    assert.deepEqual(blockRequest({ block: 'all' }, optionsFrom({})), {
      mode: 'all',
      modeReason: { message: 'asked for with --block (override)' },
    });
    assert.equal(blockRequest({ block: 'auto' }, optionsFrom({}))?.mode, 'auto');
    assert.match(blockRequest({ block: 'auto' }, optionsFrom({}))?.modeReason.message ?? '', /--block auto/);
  });

  it("copies every migration's disks when nova's live flags have VIR_MIGRATE_NON_SHARED_DISK, as libvirt does", () => {
    const options = fromFile(
      '[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_NON_SHARED_DISK\n',
    );
    const asked = blockRequest({}, options);
    assert.equal(asked?.mode, 'all');
    assert.equal(asked?.modeReason.option, 'libvirt.live_migration_flag');
    assert.match(asked?.modeReason.message ?? '', /has VIR_MIGRATE_NON_SHARED_DISK: every migration copies/);
    assert.equal(blockRequest({ block: 'auto' }, options)?.mode, 'auto', 'the override wins');
  });

  it('is a live migration otherwise: NON_SHARED_INC in the live list is removed as nova 13 did', () => {
    assert.equal(blockRequest({}, optionsFrom({})), undefined);
    const inc = fromFile(
      '[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_NON_SHARED_INC\n',
    );
    assert.equal(blockRequest({}, inc), undefined);
  });
});
