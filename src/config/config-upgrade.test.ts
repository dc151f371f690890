import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import { replaceFileAtomically } from './atomic-replace.js';
import { checkConfig } from './config-check.js';
import { upgradeConfig, type ConfigUpgrade } from './config-upgrade.js';
import { MIGRATE_FLAGS } from './migration-flags.js';
import { HAND_TUNED_CONF, MITAKA_COMPUTE_CONF, MODERN_CONF } from './sample-confs.fixture.js';

const FILE = '/etc/nova/nova.conf';

/** The round-trip property: check(legacy) == check(upgraded) except the reported flags. */
function assertRoundTrip(u: ConfigUpgrade): void {
  const legacy = checkConfig(u.original, FILE);
  const upgraded = checkConfig(u.upgraded, FILE);
  assert.equal(upgraded.ok, true, upgraded.errors.map((e) => e.message).join('\n'));
  assert.equal(upgraded.flags.mode, 'current');
  for (const kind of ['live', 'block'] as const) {
    const reported = new Set(u.noEquivalent.filter((n) => n.kind === kind).map((n) => n.flag));
    const strip = (flags: readonly string[]): string[] => flags.filter((f) => !reported.has(f));
    assert.deepEqual(strip(upgraded.flags[kind]), strip(legacy.flags[kind]), kind);
  }
}

describe('upgradeConfig', () => {
  it('rewrites the Mitaka default lists into live_migration_tunnelled = True', () => {
    const u = upgradeConfig(MITAKA_COMPUTE_CONF, FILE);
    assert.equal(u.changed, true);
    assert.deepEqual(
      u.settings.map((s) => [s.option, s.value]),
      [['libvirt.live_migration_tunnelled', true]],
    );
    assert.deepEqual(
      u.noEquivalent.map((n) => [n.kind, n.flag, n.change]),
      [
        ['live', 'VIR_MIGRATE_PERSIST_DEST', 'gained'],
        ['block', 'VIR_MIGRATE_PERSIST_DEST', 'gained'],
      ],
    );
    assert.match(u.noEquivalent[0]?.meaning ?? '', /always persists the VM on the destination/);
    assertRoundTrip(u);
  });

  it('keeps every other line byte for byte', () => {
    const u = upgradeConfig(MITAKA_COMPUTE_CONF, FILE);
    const before = MITAKA_COMPUTE_CONF.split('\n');
    const after = u.upgraded.split('\n');
    const kept = before.filter((_, i) => !u.removedLines.includes(i + 1));
    const added = new Set([
      '# vmferry config upgrade: replaces live_migration_flag and block_migration_flag',
      'live_migration_tunnelled = True',
    ]);
    assert.deepEqual(
      after.filter((l) => !added.has(l)),
      kept,
    );
    assert.deepEqual(u.removedLines, [18, 19, 20]);
    assert.ok(
      u.upgraded.includes('# Tunnelled because the storage network is not routed between racks.\n# vmferry'),
    );
  });

  it('prints a unified diff of the change', () => {
    const u = upgradeConfig(MITAKA_COMPUTE_CONF, FILE);
    assert.equal(
      u.diff,
      [
        '--- /etc/nova/nova.conf\t(original)',
        '+++ /etc/nova/nova.conf\t(upgraded)',
        '@@ -15,9 +15,8 @@',
        ' virt_type = kvm',
        ' #live_migration_uri = qemu+tcp://%s/system',
        ' # Tunnelled because the storage network is not routed between racks.',
        '-live_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_LIVE, VIR_MIGRATE_TUNNELLED',
        '-block_migration_flag = VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_PEER2PEER,',
        '-    VIR_MIGRATE_LIVE, VIR_MIGRATE_TUNNELLED, VIR_MIGRATE_NON_SHARED_INC',
        '+# vmferry config upgrade: replaces live_migration_flag and block_migration_flag',
        '+live_migration_tunnelled = True',
        ' live_migration_bandwidth = 0',
        ' live_migration_downtime = 500',
        ' live_migration_downtime_steps = 10',
        '',
      ].join('\n'),
    );
  });

  it('maps AUTO_CONVERGE to its permit option, native transport to tunnelled = False, and reports UNSAFE', () => {
    const u = upgradeConfig(HAND_TUNED_CONF, FILE);
    assert.deepEqual(
      u.settings.map((s) => [s.option, s.value]),
      [
        ['libvirt.live_migration_tunnelled', false],
        ['libvirt.live_migration_permit_auto_converge', true],
      ],
    );
    const lost = u.noEquivalent.filter((n) => n.change === 'lost');
    assert.deepEqual(
      lost.map((n) => [n.kind, n.flag]),
      [['live', 'VIR_MIGRATE_UNSAFE']],
    );
    assert.match(
      lost[0]?.meaning ?? '',
      /no option of today's nova asks for it \(migrate even when libvirt considers it unsafe/,
    );
    assert.ok(u.upgraded.includes('live_migration_permit_post_copy = false\n'), 'unrelated option untouched');
    assertRoundTrip(u);
  });

  it('changes an option already in the file in place rather than adding a second one', () => {
    const text =
      '[libvirt]\nlive_migration_permit_post_copy = false\nlive_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_POSTCOPY\n';
    const u = upgradeConfig(text, FILE);
    assert.equal(
      u.upgraded,
      '[libvirt]\nlive_migration_permit_post_copy = True\n# vmferry config upgrade: replaces live_migration_flag\n' +
        'live_migration_tunnelled = False\n',
    );
    assertRoundTrip(u);
  });

  it('reports a block list that disagrees with the live list about tunnelling', () => {
    const text =
      '[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_UNDEFINE_SOURCE\n' +
      'block_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_UNDEFINE_SOURCE, ' +
      'VIR_MIGRATE_NON_SHARED_INC, VIR_MIGRATE_TUNNELLED\n';
    const u = upgradeConfig(text, FILE);
    const t = u.noEquivalent.find((n) => n.flag === 'VIR_MIGRATE_TUNNELLED');
    assert.deepEqual([t?.kind, t?.change], ['block', 'lost']);
    assert.match(t?.meaning ?? '', /disagreed.*taken from live_migration_flag/);
    assertRoundTrip(u);
  });

  it('leaves a file without legacy options alone and says so', () => {
    const u = upgradeConfig(MODERN_CONF, FILE);
    assert.equal(u.changed, false);
    assert.equal(u.upgraded, MODERN_CONF);
    assert.equal(u.diff, '');
    assert.match(u.messages[0] ?? '', /no legacy options.*left alone/);
  });

  it('keeps CRLF line endings and a last line without newline', () => {
    const text =
      '[DEFAULT]\r\ndebug = 1\r\n[libvirt]\r\nlive_migration_flag = VIR_MIGRATE_LIVE,VIR_MIGRATE_TUNNELLED';
    const u = upgradeConfig(text, FILE);
    assert.equal(
      u.upgraded,
      '[DEFAULT]\r\ndebug = 1\r\n[libvirt]\r\n# vmferry config upgrade: replaces live_migration_flag\r\n' +
        'live_migration_tunnelled = True',
    );
    assertRoundTrip(u);
  });

  it('refuses a file with errors', () => {
    assert.throws(
      () =>
        upgradeConfig(
          '[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE\nlive_migration_downtime = 5\n',
          FILE,
        ),
      (err: unknown) => err instanceof ConfigError && err.line === 3,
    );
  });

  it('round-trips 300 random legacy configurations', () => {
    let seed = 42;
    const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
    const names = Object.keys(MIGRATE_FLAGS);
    const pick = (): string => names.filter(() => rand() < 0.3).join(rand() < 0.5 ? ', ' : ',\n    ');
    for (let i = 0; i < 300; i++) {
      const lines = ['[libvirt]'];
      if (rand() < 0.3) lines.push(`virt_type = ${rand() < 0.5 ? 'xen' : 'qemu'}`);
      const tunnel = rand();
      if (tunnel < 0.25) lines.push('live_migration_tunnelled = True');
      else if (tunnel < 0.5) lines.push('live_migration_tunnelled = False');
      if (rand() < 0.2) lines.push('live_migration_permit_post_copy = True');
      if (rand() < 0.2) lines.push('live_migration_permit_auto_converge = True');
      const which = rand();
      if (which < 0.7) lines.push(`live_migration_flag = ${pick()}`);
      if (which > 0.3) lines.push(`block_migration_flag = ${pick()}`);
      const text = `${lines.join('\n')}\n`;
      if (!checkConfig(text, FILE).ok) continue; // tunnelled + TLS cannot be upgraded
      const u = upgradeConfig(text, FILE);
      assertRoundTrip(u);
    }
  });
});

describe('replaceFileAtomically', () => {
  it('replaces the file, keeps its mode and a backup; a second run makes a timestamped backup', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmferry-upgrade-'));
    try {
      const path = join(dir, 'nova.conf');
      await writeFile(path, 'old\n');
      await chmod(path, 0o640);
      const b1 = await replaceFileAtomically(path, 'new\n', new Date('2024-05-01T10:20:30.456Z'));
      assert.equal(b1, `${path}.bak`);
      assert.equal(await readFile(path, 'utf8'), 'new\n');
      assert.equal(await readFile(b1, 'utf8'), 'old\n');
      assert.equal((await stat(path)).mode & 0o777, 0o640);
      const b2 = await replaceFileAtomically(path, 'newer\n', new Date('2024-05-01T10:20:30.456Z'));
      assert.equal(b2, `${path}.bak.20240501T102030Z`);
      assert.equal(await readFile(b2, 'utf8'), 'new\n');
      assert.deepEqual((await readdir(dir)).sort(), [
        'nova.conf',
        'nova.conf.bak',
        'nova.conf.bak.20240501T102030Z',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
