import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkConfig, configCheckJson } from './config-check.js';
import { OPTIONS } from './option-table.js';

const FILE = '/etc/nova/nova.conf';

function check(text: string): ReturnType<typeof checkConfig> {
  return checkConfig(text, FILE);
}

describe('typing and resolving options', () => {
  it('resolves defaults with source "default" and file values with file:line', () => {
    const c = check('[libvirt]\nlive_migration_downtime = 800\n');
    assert.ok(c.options);
    assert.deepEqual(c.options['libvirt.live_migration_downtime'], {
      value: 800,
      source: { kind: 'file', file: FILE, line: 2 },
    });
    assert.deepEqual(c.options['libvirt.live_migration_downtime_steps'], {
      value: 10,
      source: { kind: 'default' },
    });
    assert.equal(c.options['libvirt.live_migration_tunnelled'].value, null);
    assert.equal(c.options['vmferry.channels'].value, 4);
  });

  it('types booleans as oslo does (true/false, 1/0, on/off, yes/no, any case)', () => {
    for (const [raw, value] of [
      ['TRUE', true],
      ['on', true],
      ['1', true],
      ['Yes', true],
      ['false', false],
      ['OFF', false],
      ['0', false],
      ['no', false],
    ] as const) {
      const c = check(`[libvirt]\nlive_migration_permit_post_copy = ${raw}\n`);
      assert.equal(c.options?.['libvirt.live_migration_permit_post_copy'].value, value, raw);
    }
  });

  it('names file:line, option, the value given and what is allowed', () => {
    const c = check('[libvirt]\n\nlive_migration_downtime = 50\nlive_migration_permit_post_copy = maybe\n');
    assert.equal(c.ok, false);
    assert.equal(c.errors.length, 2);
    const [downtime, postCopy] = c.errors;
    assert.equal(downtime?.line, 3);
    assert.equal(downtime?.option, 'libvirt.live_migration_downtime');
    assert.equal(
      downtime?.message,
      '/etc/nova/nova.conf:3: libvirt.live_migration_downtime = "50": below the minimum 100; ' +
        'allowed: a whole number >= 100 (ms)',
    );
    assert.match(
      postCopy?.message ?? '',
      /:4: libvirt.live_migration_permit_post_copy = "maybe": not a boolean; allowed: true or false/,
    );
  });

  it('enforces nova minimums for steps and delay and the timeout action choices', () => {
    const c = check(
      '[libvirt]\nlive_migration_downtime_steps = 2\nlive_migration_downtime_delay = 2\n' +
        'live_migration_timeout_action = Abort\nlive_migration_completion_timeout = -1\nlive_migration_bandwidth = x\n',
    );
    assert.deepEqual(
      c.errors.map((e) => [e.line, e.option]),
      [
        [2, 'libvirt.live_migration_downtime_steps'],
        [3, 'libvirt.live_migration_downtime_delay'],
        [4, 'libvirt.live_migration_timeout_action'],
        [5, 'libvirt.live_migration_completion_timeout'],
        [6, 'libvirt.live_migration_bandwidth'],
      ],
    );
    assert.match(c.errors[2]?.message ?? '', /allowed: one of abort, force_complete/);
  });

  it('warns about an unknown live_migration_* option with the nearest known name', () => {
    const c = check('[libvirt]\nlive_migration_downtime_step = 5\nimages_type = rbd\n');
    assert.equal(c.ok, true);
    assert.deepEqual(
      c.warnings.map((w) => w.message),
      [
        'unknown option [libvirt] live_migration_downtime_step is ignored; did you mean live_migration_downtime_steps?',
      ],
    );
    assert.equal(c.warnings[0]?.line, 2);
  });

  it('warns about unknown [vmferry] options too', () => {
    const c = check('[vmferry]\nchanels = 8\n');
    assert.match(c.warnings[0]?.message ?? '', /did you mean channels\?/);
  });

  it('warns that [DEFAULT] live_migration_* options are ignored', () => {
    const c = check('[DEFAULT]\nlive_migration_bandwidth = 100\n[libvirt]\n');
    assert.equal(c.options?.['libvirt.live_migration_bandwidth'].value, 0);
    assert.match(c.warnings[0]?.message ?? '', /only from \[libvirt\]/);
  });

  it('lets the last of repeated keys win, and says so', () => {
    const c = check('[libvirt]\nlive_migration_downtime = 200\nlive_migration_downtime = 300\n');
    assert.equal(c.options?.['libvirt.live_migration_downtime'].value, 300);
    assert.equal(
      c.options?.['libvirt.live_migration_downtime'].source.kind === 'file' &&
        c.options['libvirt.live_migration_downtime'].source.line,
      3,
    );
    assert.match(c.warnings[0]?.message ?? '', /set 2 times \(lines 2, 3\); the last one wins/);
  });

  it('warns about deprecated and removed options and retired virt types', () => {
    const c = check(
      '[libvirt]\nvirt_type = uml\nlive_migration_uri = qemu+ssh://%s/system\nlive_migration_progress_timeout = 0\n',
    );
    const msgs = c.warnings.map((w) => w.message).join('\n');
    assert.match(msgs, /uml is no longer accepted/);
    assert.match(msgs, /live_migration_uri is deprecated since nova 15\.0\.0/);
    assert.match(msgs, /live_migration_progress_timeout was removed.*stall_timeout/);
  });

  it('warns when the completion timeout ends before the last downtime step', () => {
    const c = check('[libvirt]\nlive_migration_completion_timeout = 100\n');
    assert.match(
      c.warnings[0]?.message ?? '',
      /ends before the last downtime step \(10 steps x 75 s\/GiB = 750/,
    );
  });

  it('turns a syntax error into a single error and no options', () => {
    const c = check('[libvirt]\nthis is not an option\n');
    assert.equal(c.ok, false);
    assert.equal(c.options, null);
    assert.equal(c.errors[0]?.line, 2);
  });

  it('prints the stable JSON shape', () => {
    const json = configCheckJson(check('[libvirt]\nlive_migration_tunnelled = false\n'));
    assert.deepEqual(Object.keys(json), ['ok', 'file', 'options', 'sources', 'warnings', 'errors', 'flags']);
    const options = json.options as Record<string, unknown>;
    assert.equal(options['libvirt.live_migration_tunnelled'], false);
    assert.equal(
      options['libvirt.live_migration_flag'],
      undefined,
      'removed options are shown only when set',
    );
    assert.equal((json.sources as Record<string, string>)['libvirt.live_migration_tunnelled'], `${FILE}:2`);
  });

  it('has a help text and a sane default for every table row', () => {
    for (const o of OPTIONS) {
      assert.ok(o.help.length > 10, o.name);
      if (o.type === 'int') {
        assert.equal(typeof o.default, 'number', o.name);
        if ('min' in o) assert.ok((o.default as number) >= o.min, o.name);
      }
    }
  });
});
