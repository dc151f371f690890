import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HAND_TUNED_CONF, MITAKA_COMPUTE_CONF, MODERN_CONF } from '../../config/sample-confs.fixture.js';
import { runMain as run } from '../_run-main.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vmferry-cli-config-'));
  await writeFile(join(dir, 'mitaka.conf'), MITAKA_COMPUTE_CONF);
  await writeFile(join(dir, 'hand.conf'), HAND_TUNED_CONF);
  await writeFile(join(dir, 'modern.conf'), MODERN_CONF);
  await writeFile(
    join(dir, 'bad.conf'),
    '[libvirt]\nlive_migration_downtime = 10\nlive_migration_timeout_action = never\n',
  );
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('vmferry config check', () => {
  it('prints the JSON shape with sorted flags and exits 0 when there are no errors', async () => {
    const r = await run('config', 'check', join(dir, 'mitaka.conf'), '--json');
    assert.equal(r.code, 0, r.err);
    const json = JSON.parse(r.out) as {
      ok: boolean;
      options: Record<string, unknown>;
      warnings: Array<{ option: string; message: string }>;
      errors: unknown[];
      flags: { live: string[]; block: string[] };
    };
    assert.equal(json.ok, true);
    assert.equal(json.options['libvirt.live_migration_downtime'], 500);
    assert.deepEqual(json.flags.live, [...json.flags.live].sort());
    assert.deepEqual(json.flags.block, [
      'VIR_MIGRATE_LIVE',
      'VIR_MIGRATE_NON_SHARED_INC',
      'VIR_MIGRATE_PEER2PEER',
      'VIR_MIGRATE_TUNNELLED',
      'VIR_MIGRATE_UNDEFINE_SOURCE',
    ]);
    assert.ok(json.warnings.some((w) => w.option === 'libvirt.live_migration_flag'));
    assert.deepEqual(json.errors, []);
  });

  it('exits 1 and lists every error with its line', async () => {
    const r = await run('config', 'check', join(dir, 'bad.conf'), '--json');
    assert.equal(r.code, 1);
    const json = JSON.parse(r.out) as { ok: boolean; errors: Array<{ option: string; line: number }> };
    assert.equal(json.ok, false);
    assert.deepEqual(
      json.errors.map((e) => [e.option, e.line]),
      [
        ['libvirt.live_migration_downtime', 2],
        ['libvirt.live_migration_timeout_action', 3],
      ],
    );
  });

  it('prints a readable summary without --json', async () => {
    const r = await run('config', 'check', join(dir, 'hand.conf'));
    assert.equal(r.code, 0);
    assert.match(r.out, /: OK, \d+ warnings\n/);
    assert.match(r.out, /removing VIR_MIGRATE_PERSIST_DEST from libvirt.live_migration_flag/);
    assert.match(r.out, /live: {2}VIR_MIGRATE_AUTO_CONVERGE VIR_MIGRATE_LIVE/);
  });

  it('fails cleanly on a missing file', async () => {
    const r = await run('config', 'check', join(dir, 'missing.conf'));
    assert.equal(r.code, 1);
    assert.match(r.out, /cannot read the file \(ENOENT\)/);
  });
});

describe('vmferry config upgrade', () => {
  it('prints the diff and what has no equivalent, and leaves the file alone without --write', async () => {
    const path = join(dir, 'hand.conf');
    const r = await run('config', 'upgrade', path);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /live -VIR_MIGRATE_UNSAFE: no option of today's nova asks for it/);
    assert.match(r.out, /\n\+live_migration_tunnelled = False\n/);
    assert.match(r.out, /run again with --write/);
    assert.equal(await readFile(path, 'utf8'), HAND_TUNED_CONF);
  });

  it('--write replaces the file and keeps a backup; the result checks with the same flags', async () => {
    const path = join(dir, 'mitaka.conf');
    const legacy = JSON.parse((await run('config', 'check', path, '--json')).out) as {
      flags: { live: string[] };
    };
    const r = await run('config', 'upgrade', path, '--write', '--json');
    assert.equal(r.code, 0, r.err);
    const json = JSON.parse(r.out) as {
      written: boolean;
      backup: string;
      noEquivalent: Array<{ flag: string }>;
    };
    assert.equal(json.written, true);
    assert.equal(json.backup, `${path}.bak`);
    assert.equal(await readFile(json.backup, 'utf8'), MITAKA_COMPUTE_CONF);
    const upgraded = JSON.parse((await run('config', 'check', path, '--json')).out) as {
      ok: boolean;
      flags: { live: string[] };
    };
    assert.equal(upgraded.ok, true);
    const reported = new Set(json.noEquivalent.map((n) => n.flag));
    assert.deepEqual(
      upgraded.flags.live.filter((f) => !reported.has(f)),
      legacy.flags.live.filter((f) => !reported.has(f)),
    );
    assert.ok(!(await readdir(dir)).some((f) => f.endsWith('.tmp')), 'no temporary file left behind');
  });

  it('says a file without legacy options is left alone', async () => {
    const r = await run('config', 'upgrade', join(dir, 'modern.conf'), '--write');
    assert.equal(r.code, 0);
    assert.match(r.out, /no legacy options .* left alone/);
    assert.ok(!(await readdir(dir)).includes('modern.conf.bak'));
  });

  it('refuses a file with errors, exit 1 with a hint', async () => {
    const r = await run('config', 'upgrade', join(dir, 'bad.conf'));
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot upgrade a file with errors/);
    assert.match(r.err, /hint: run `vmferry config check`/);
  });
});
