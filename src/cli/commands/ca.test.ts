import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runMain as run } from '../_run-main.js';

describe('vmferry ca', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-ca-cli-test-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('ca init --json prints the paths', async () => {
    const dir = join(root, 'ca');
    const r = await run('ca', 'init', dir, '--json');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), { dir, cert: join(dir, 'ca.pem'), key: join(dir, 'ca-key.pem') });
  });

  it('ca init refuses an existing CA with message and hint', async () => {
    const r = await run('ca', 'init', join(root, 'ca'));
    assert.equal(r.code, 1);
    assert.match(r.err, /^vmferry: error: a CA already exists: .*ca-key\.pem is present\nvmferry: hint: /);
    assert.equal(r.out, '');
  });

  it('ca issue --json prints paths and names; files land in CA/issued/NAME', async () => {
    const r = await run(
      'ca',
      'issue',
      join(root, 'ca'),
      '--name',
      'host-a',
      '--role',
      'host',
      '--ip',
      '198.18.0.1',
      '--ip',
      '198.18.0.11',
      '--dns',
      'a.example.net',
      '--days',
      '90',
      '--json',
    );
    assert.equal(r.code, 0, r.err);
    const out = JSON.parse(r.out) as Record<string, unknown>;
    const dir = join(root, 'ca', 'issued', 'host-a');
    assert.equal(out.dir, dir);
    assert.equal(out.role, 'host');
    assert.equal(out.cert, join(dir, 'cert.pem'));
    assert.equal(out.key, join(dir, 'key.pem'));
    assert.equal(out.ca, join(dir, 'ca.pem'));
    assert.deepEqual(out.dnsNames, ['host-a', 'a.example.net']);
    assert.deepEqual(out.ips, ['198.18.0.1', '198.18.0.11']);
    assert.equal((await stat(join(dir, 'key.pem'))).mode & 0o777, 0o600);
  });

  it('ca issue prints plain lines without --json', async () => {
    const r = await run(
      'ca',
      'issue',
      join(root, 'ca'),
      '--name',
      'operator',
      '--role',
      'operator',
      '--out',
      join(root, 'op'),
    );
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^issued operator certificate for operator in .*\/op\n/);
    assert.match(r.out, /names +DNS:operator\n/);
  });

  it('ca issue names the bad value', async () => {
    for (const [args, bad] of [
      [['--ip', '198.18.0.1', '--ip', 'not-an-ip'], "invalid IP address 'not-an-ip'"],
      [['--dns', 'under_score'], "invalid DNS name 'under_score'"],
      [['--days', 'ten'], '--days must be a whole number, got "ten"'],
      [['--role', 'admin'], '--role must be host or operator or viewer or metrics, got "admin"'],
    ] as const) {
      const role = args[0] === '--role' ? [] : ['--role', 'host'];
      const r = await run('ca', 'issue', join(root, 'ca'), '--name', 'host-b', ...role, ...args);
      assert.equal(r.code, 1);
      assert.ok(r.err.includes(bad), r.err);
    }
    const missing = await run('ca', 'issue', join(root, 'ca'));
    assert.notEqual(missing.code, 0);
    assert.match(missing.err, /--name/);
    const noRole = await run('ca', 'issue', join(root, 'ca'), '--name', 'host-c');
    assert.notEqual(noRole.code, 0);
    assert.match(noRole.err, /required option '--role <role>' not specified/);
  });
});
