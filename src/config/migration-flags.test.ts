import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkConfig } from './config-check.js';
import { parseFlagList } from './migration-flags.js';

const MITAKA_LIVE =
  'VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE, VIR_MIGRATE_TUNNELLED';
const MITAKA_BLOCK = `${MITAKA_LIVE}, VIR_MIGRATE_NON_SHARED_INC`;

function check(libvirt: string): ReturnType<typeof checkConfig> {
  return checkConfig(`[DEFAULT]\ndebug = false\n\n[libvirt]\n${libvirt}\n`, '/etc/nova/nova.conf');
}

function flags(libvirt: string): { live: string[]; block: string[] } {
  const c = check(libvirt);
  assert.deepEqual(
    c.errors.map((e) => e.message),
    [],
  );
  return { live: [...c.flags.live], block: [...c.flags.block] };
}

function short(names: readonly string[]): string[] {
  return names.map((n) => n.replace('VIR_MIGRATE_', ''));
}

function corrections(libvirt: string): string[] {
  return check(libvirt)
    .warnings.filter((w) => /^(adding|removing) /.test(w.message))
    .map((w) => w.message);
}

describe('computeMigrationFlags, legacy lists (nova 13 rules)', () => {
  it('keeps the Mitaka default lists unchanged, with no correction', () => {
    const lib = `live_migration_flag = ${MITAKA_LIVE}\nblock_migration_flag = ${MITAKA_BLOCK}`;
    const f = flags(lib);
    assert.deepEqual(short(f.live), ['LIVE', 'PEER2PEER', 'TUNNELLED', 'UNDEFINE_SOURCE']);
    assert.deepEqual(short(f.block), ['LIVE', 'NON_SHARED_INC', 'PEER2PEER', 'TUNNELLED', 'UNDEFINE_SOURCE']);
    assert.deepEqual(corrections(lib), []);
    assert.equal(check(lib).flags.mode, 'legacy');
  });

  it('uses the Mitaka default for the list the file does not set', () => {
    const f = flags(
      'live_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE',
    );
    assert.deepEqual(short(f.live), ['LIVE', 'PEER2PEER', 'UNDEFINE_SOURCE']);
    assert.deepEqual(short(f.block), ['LIVE', 'NON_SHARED_INC', 'PEER2PEER', 'TUNNELLED', 'UNDEFINE_SOURCE']);
  });

  it('removes NON_SHARED_INC from the live list, warning with flag, option, why and line', () => {
    const c = check(`live_migration_flag = ${MITAKA_LIVE}, VIR_MIGRATE_NON_SHARED_INC`);
    assert.ok(!c.flags.live.includes('VIR_MIGRATE_NON_SHARED_INC'));
    const w = c.warnings.find((x) => x.message.startsWith('removing VIR_MIGRATE_NON_SHARED_INC'));
    assert.ok(w);
    assert.equal(w.option, 'libvirt.live_migration_flag');
    assert.equal(w.line, 5);
    assert.match(w.message, /every live migration into a block migration/);
  });

  it('adds NON_SHARED_INC to a block list that lacks it', () => {
    const lib = 'block_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE';
    assert.deepEqual(short(flags(lib).block), ['LIVE', 'NON_SHARED_INC', 'PEER2PEER', 'UNDEFINE_SOURCE']);
    assert.deepEqual(corrections(lib), [
      'adding VIR_MIGRATE_NON_SHARED_INC to libvirt.block_migration_flag: without it every block migration ' +
        'would be a live migration that copies no disk (nova 13 added it too)',
    ]);
  });

  it('adds PEER2PEER and UNDEFINE_SOURCE and removes PERSIST_DEST for kvm', () => {
    const lib = 'live_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PERSIST_DEST';
    assert.deepEqual(short(flags(lib).live), ['LIVE', 'PEER2PEER', 'UNDEFINE_SOURCE']);
    const msgs = corrections(lib).join('\n');
    assert.match(msgs, /adding VIR_MIGRATE_PEER2PEER to libvirt.live_migration_flag: the kvm virt type/);
    assert.match(msgs, /adding VIR_MIGRATE_UNDEFINE_SOURCE .*remain defined on the source/);
    assert.match(msgs, /removing VIR_MIGRATE_PERSIST_DEST .*persists the VM on the destination/);
  });

  it('removes PEER2PEER from both lists for virt_type = xen', () => {
    const lib = `virt_type = xen\nlive_migration_flag = ${MITAKA_LIVE}\nblock_migration_flag = ${MITAKA_BLOCK}`;
    const f = flags(lib);
    assert.deepEqual(short(f.live), ['LIVE', 'TUNNELLED', 'UNDEFINE_SOURCE']);
    assert.deepEqual(short(f.block), ['LIVE', 'NON_SHARED_INC', 'TUNNELLED', 'UNDEFINE_SOURCE']);
    assert.equal(corrections(lib).filter((m) => /removing VIR_MIGRATE_PEER2PEER .*xen/.test(m)).length, 2);
  });

  it('does not add PEER2PEER for xen when the list lacks it', () => {
    const f = flags('virt_type = xen\nlive_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_UNDEFINE_SOURCE');
    assert.deepEqual(short(f.live), ['LIVE', 'UNDEFINE_SOURCE']);
  });

  const withTunnel = `live_migration_flag = ${MITAKA_LIVE}\nblock_migration_flag = ${MITAKA_BLOCK}`;
  const withoutTunnel =
    'live_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE\n' +
    'block_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE, ' +
    'VIR_MIGRATE_NON_SHARED_INC';
  const tunnelledIn = (lib: string): [boolean, boolean] => {
    const f = flags(lib);
    return [f.live.includes('VIR_MIGRATE_TUNNELLED'), f.block.includes('VIR_MIGRATE_TUNNELLED')];
  };

  it('tunnelled unset leaves the lists as they are', () => {
    assert.deepEqual(tunnelledIn(withTunnel), [true, true]);
    assert.deepEqual(tunnelledIn(withoutTunnel), [false, false]);
    assert.deepEqual(corrections(withTunnel), []);
  });

  it('tunnelled = True adds TUNNELLED to lists without it, with a warning per list', () => {
    assert.deepEqual(tunnelledIn(`live_migration_tunnelled = True\n${withoutTunnel}`), [true, true]);
    assert.deepEqual(
      corrections(`live_migration_tunnelled = True\n${withoutTunnel}`).filter((m) => m.includes('TUNNELLED')),
      [
        'adding VIR_MIGRATE_TUNNELLED to libvirt.live_migration_flag: live_migration_tunnelled is True',
        'adding VIR_MIGRATE_TUNNELLED to libvirt.block_migration_flag: live_migration_tunnelled is True',
      ],
    );
    assert.deepEqual(tunnelledIn(`live_migration_tunnelled = True\n${withTunnel}`), [true, true]);
    assert.deepEqual(corrections(`live_migration_tunnelled = True\n${withTunnel}`), []);
  });

  it('tunnelled = False removes TUNNELLED from lists with it', () => {
    assert.deepEqual(tunnelledIn(`live_migration_tunnelled = False\n${withTunnel}`), [false, false]);
    assert.equal(
      corrections(`live_migration_tunnelled = False\n${withTunnel}`).filter((m) =>
        m.startsWith('removing VIR_MIGRATE_TUNNELLED'),
      ).length,
      2,
    );
    assert.deepEqual(tunnelledIn(`live_migration_tunnelled = False\n${withoutTunnel}`), [false, false]);
  });

  it('ignores unknown names with a warning that suggests the nearest flag', () => {
    const c = check(
      'live_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_UNDEFINE_SORUCE',
    );
    assert.deepEqual(short(c.flags.live), ['LIVE', 'PEER2PEER', 'UNDEFINE_SOURCE']);
    const w = c.warnings.find((x) => x.message.startsWith('ignoring unknown'));
    assert.ok(w);
    assert.match(w.message, /"VIR_MIGRATE_UNDEFINE_SORUCE".*did you mean VIR_MIGRATE_UNDEFINE_SOURCE\?/);
  });

  it('reads multi-line lists and keeps other libvirt flags such as UNSAFE', () => {
    const f = flags(
      'live_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE,\n    VIR_MIGRATE_PEER2PEER,\n    VIR_MIGRATE_LIVE,\n    VIR_MIGRATE_UNSAFE',
    );
    assert.deepEqual(short(f.live), ['LIVE', 'PEER2PEER', 'UNDEFINE_SOURCE', 'UNSAFE']);
  });

  it('adds POSTCOPY, not AUTO_CONVERGE, when both are permitted (nova 14 read both)', () => {
    const f = flags(
      `live_migration_flag = ${MITAKA_LIVE}\nlive_migration_permit_post_copy = true\nlive_migration_permit_auto_converge = true`,
    );
    assert.ok(f.live.includes('VIR_MIGRATE_POSTCOPY'));
    assert.ok(!f.live.includes('VIR_MIGRATE_AUTO_CONVERGE'));
  });

  it('warns that native TLS does not change legacy flags', () => {
    const c = check(
      `live_migration_flag = ${MITAKA_LIVE}\nlive_migration_with_native_tls = true\nlive_migration_tunnelled = false`,
    );
    assert.ok(!c.flags.live.includes('VIR_MIGRATE_TLS'));
    assert.ok(c.warnings.some((w) => w.option === 'libvirt.live_migration_with_native_tls'));
  });
});

describe("computeMigrationFlags, today's rules (no legacy lists)", () => {
  it('uses the base flags when nothing is set', () => {
    const c = check('virt_type = kvm');
    assert.equal(c.flags.mode, 'current');
    assert.deepEqual(short(c.flags.live), ['LIVE', 'PEER2PEER', 'PERSIST_DEST', 'UNDEFINE_SOURCE']);
    assert.deepEqual(short(c.flags.block), [
      'LIVE',
      'NON_SHARED_INC',
      'PEER2PEER',
      'PERSIST_DEST',
      'UNDEFINE_SOURCE',
    ]);
  });

  it('leaves out PEER2PEER for xen', () => {
    assert.deepEqual(short(flags('virt_type = xen').live), ['LIVE', 'PERSIST_DEST', 'UNDEFINE_SOURCE']);
  });

  it('adds TUNNELLED only for an explicit True', () => {
    assert.ok(flags('live_migration_tunnelled = True').live.includes('VIR_MIGRATE_TUNNELLED'));
    assert.ok(!flags('live_migration_tunnelled = False').live.includes('VIR_MIGRATE_TUNNELLED'));
    assert.ok(!flags('virt_type = kvm').live.includes('VIR_MIGRATE_TUNNELLED'));
  });

  it('adds TLS for native TLS and PARALLEL for more than one connection', () => {
    const f = flags('live_migration_with_native_tls = yes\nlive_migration_parallel_connections = 4');
    assert.ok(f.live.includes('VIR_MIGRATE_TLS') && f.block.includes('VIR_MIGRATE_TLS'));
    assert.ok(f.live.includes('VIR_MIGRATE_PARALLEL'));
    assert.ok(!flags('live_migration_parallel_connections = 1').live.includes('VIR_MIGRATE_PARALLEL'));
  });

  it('lets post-copy win over auto-converge, and says so', () => {
    const lib = 'live_migration_permit_post_copy = True\nlive_migration_permit_auto_converge = True';
    const c = check(lib);
    assert.ok(c.flags.live.includes('VIR_MIGRATE_POSTCOPY'));
    assert.ok(!c.flags.live.includes('VIR_MIGRATE_AUTO_CONVERGE'));
    assert.ok(c.warnings.some((w) => w.option === 'libvirt.live_migration_permit_auto_converge'));
    assert.ok(flags('live_migration_permit_auto_converge = True').live.includes('VIR_MIGRATE_AUTO_CONVERGE'));
  });

  it('rejects tunnelled together with native TLS, naming the line', () => {
    const c = check('live_migration_with_native_tls = True\nlive_migration_tunnelled = True');
    assert.equal(c.ok, false);
    assert.equal(c.errors.length, 1);
    assert.equal(c.errors[0]?.option, 'libvirt.live_migration_tunnelled');
    assert.equal(c.errors[0]?.line, 6);
    assert.deepEqual(c.flags.live, []);
  });
});

describe('parseFlagList', () => {
  it('splits like nova str2sum: empty items skipped, blank items warned', () => {
    const r = parseFlagList('VIR_MIGRATE_LIVE,, ,VIR_MIGRATE_PEER2PEER,', 'x');
    assert.deepEqual([...r.flags], ['VIR_MIGRATE_LIVE', 'VIR_MIGRATE_PEER2PEER']);
    assert.equal(r.warnings.length, 1);
  });

  it('is case-sensitive, like getattr(libvirt, name)', () => {
    assert.equal(parseFlagList('vir_migrate_live', 'x').flags.size, 0);
  });
});
