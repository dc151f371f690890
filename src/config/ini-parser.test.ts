import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import { parseIni } from './ini-parser.js';

function entries(text: string): Array<[string, string, string, number]> {
  return parseIni(text, 'nova.conf').entries.map((e) => [e.section, e.key, e.value, e.line]);
}

function parseError(text: string | Uint8Array): ConfigError {
  try {
    parseIni(text, 'nova.conf');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

describe('parseIni (oslo.config rules)', () => {
  it('reads key = value and key: value with line numbers', () => {
    assert.deepEqual(entries('[DEFAULT]\ndebug = true\n\n[libvirt]\nvirt_type: kvm\n'), [
      ['DEFAULT', 'debug', 'true', 2],
      ['libvirt', 'virt_type', 'kvm', 5],
    ]);
  });

  it('splits on whichever of = and : comes first', () => {
    assert.deepEqual(entries('[libvirt]\nlive_migration_uri = qemu+tcp://%s/system\nx: a=b\n'), [
      ['libvirt', 'live_migration_uri', 'qemu+tcp://%s/system', 2],
      ['libvirt', 'x', 'a=b', 3],
    ]);
  });

  it('skips # and ; comment lines but keeps inline "comments" in the value, as oslo does', () => {
    assert.deepEqual(
      entries('# top\n[libvirt]\n; note\n#virt_type = qemu\nvirt_type = kvm # not a comment\n'),
      [['libvirt', 'virt_type', 'kvm # not a comment', 5]],
    );
  });

  it('joins indented continuation lines with newlines; a blank line ends the value', () => {
    const doc = parseIni(
      '[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE,\n    VIR_MIGRATE_PEER2PEER,\n\tVIR_MIGRATE_TUNNELLED\n\nvirt_type = kvm\n',
      'f',
    );
    assert.equal(doc.entries[0]?.value, 'VIR_MIGRATE_LIVE,\nVIR_MIGRATE_PEER2PEER,\nVIR_MIGRATE_TUNNELLED');
    assert.equal(doc.entries[0]?.line, 2);
    assert.equal(doc.entries[0]?.lastLine, 4);
    assert.equal(doc.entries[1]?.line, 6);
  });

  it('treats an indented comment after a value as part of that value (oslo has no indented comments)', () => {
    assert.equal(parseIni('[libvirt]\na = 1\n  # more\n', 'f').entries[0]?.value, '1\n# more');
  });

  it('keeps repeated keys in order', () => {
    assert.deepEqual(
      entries('[libvirt]\na = 1\na = 2\n').map((e) => e[2]),
      ['1', '2'],
    );
  });

  it('removes one pair of matching quotes', () => {
    assert.deepEqual(
      entries('[s]\na = "x y"\nb = \'z\'\nc = "unbalanced\nd = ""\n').map((e) => e[2]),
      ['x y', 'z', '"unbalanced', ''],
    );
  });

  it('lower-cases section names except DEFAULT', () => {
    assert.deepEqual(
      entries('[LibVirt]\na = 1\n[DEFAULT]\nb = 2\n').map((e) => e[0]),
      ['libvirt', 'DEFAULT'],
    );
  });

  it('accepts CRLF and CR line endings and a BOM', () => {
    assert.deepEqual(entries('\ufeff[libvirt]\r\na = 1\r\nb = 2\rc = 3'), [
      ['libvirt', 'a', '1', 2],
      ['libvirt', 'b', '2', 3],
      ['libvirt', 'c', '3', 4],
    ]);
  });

  it('rejects what oslo rejects, naming the line', () => {
    assert.equal(parseError('a = 1\n').line, 1);
    assert.match(parseError('a = 1\n').message, /nova\.conf:1: .*section/);
    assert.equal(parseError('[libvirt]\n\n  orphan\n').line, 3);
    assert.equal(parseError('[libvirt\n').line, 1);
    assert.equal(parseError('[libvirt]\n[]\n').line, 2);
    assert.equal(parseError('[libvirt]\njust words\n').line, 2);
    assert.equal(parseError('[libvirt]\n = 3\n').line, 2);
  });

  it('reports invalid UTF-8 with its line', () => {
    const bytes = new Uint8Array([...Buffer.from('[libvirt]\na = 1\nb = '), 0xff, 0xfe, 0x0a]);
    assert.equal(parseError(bytes).line, 3);
  });

  it('keeps the raw lines and terminators for byte-exact rewrites', () => {
    const doc = parseIni('[a]\r\nx = 1\n# c', 'f');
    assert.deepEqual(doc.lines, ['[a]', 'x = 1', '# c']);
    assert.deepEqual(doc.terminators, ['\r\n', '\n', '']);
  });
});
