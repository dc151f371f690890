import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import { initCa } from './ca.js';
import { issueCertificate } from './issue.js';

describe('pki issue', () => {
  let root: string;
  let caDir: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-issue-test-'));
    caDir = join(root, 'ca');
    await initCa(caDir);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('issues a certificate for both TLS server and client use into CA/issued/NAME', async () => {
    const issued = await issueCertificate(caDir, {
      name: 'host-a',
      role: 'host',
      ips: ['198.18.0.1', '2001:DB8::1', '198.18.0.1'],
      dnsNames: ['host-a.example.net', 'host-a'],
      days: 30,
    });
    const dir = join(caDir, 'issued', 'host-a');
    assert.equal(issued.dir, dir);
    assert.deepEqual((await readdir(dir)).sort(), ['ca.pem', 'cert.pem', 'key.pem']);
    assert.equal((await stat(issued.keyPath)).mode & 0o777, 0o600);
    assert.deepEqual(issued.dnsNames, ['host-a', 'host-a.example.net']);
    assert.deepEqual(issued.ips, ['198.18.0.1', '2001:db8::1']);
    assert.deepEqual(await readFile(issued.caPath), await readFile(join(caDir, 'ca.pem')));

    const cert = new X509Certificate(await readFile(issued.certPath));
    const ca = new X509Certificate(await readFile(join(caDir, 'ca.pem')));
    assert.equal(cert.subject, 'OU=host\nCN=host-a');
    assert.equal(issued.role, 'host');
    assert.equal(cert.ca, false);
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey));
    assert.equal(cert.serialNumber, issued.serialNumber);
    assert.ok(Math.abs(Date.parse(cert.validTo) - Date.now() - 30 * 86_400_000) < 120_000);
    const ext = execFileSync(
      'openssl',
      ['x509', '-in', issued.certPath, '-noout', '-ext', 'basicConstraints,keyUsage,extendedKeyUsage'],
      { encoding: 'utf8' },
    );
    assert.match(ext, /Basic Constraints: critical\s+CA:FALSE/);
    // Not critical: QEMU 7.2 would otherwise demand keyEncipherment, which ECDSA keys must not have.
    assert.match(ext, /Key Usage: \n\s+Digital Signature\n/);
    assert.match(ext, /TLS Web Server Authentication, TLS Web Client Authentication/);
  });

  it('gives every certificate its own random serial', async () => {
    const b = await issueCertificate(caDir, { name: 'host-b', role: 'host', ips: ['198.18.0.2'] });
    const c = await issueCertificate(caDir, { name: 'operator', role: 'operator' });
    assert.notEqual(b.serialNumber, c.serialNumber);
    assert.deepEqual(c.dnsNames, ['operator']);
    assert.deepEqual(c.ips, []);
  });

  it('names the role in the subject OU; only a host may serve (serverAuth)', async () => {
    for (const role of ['operator', 'viewer', 'metrics'] as const) {
      const issued = await issueCertificate(caDir, { name: `${role}-1`, role });
      const cert = new X509Certificate(await readFile(issued.certPath));
      assert.equal(cert.subject, `OU=${role}\nCN=${role}-1`);
      const ext = execFileSync(
        'openssl',
        ['x509', '-in', issued.certPath, '-noout', '-ext', 'extendedKeyUsage'],
        {
          encoding: 'utf8',
        },
      );
      assert.match(ext, /Extended Key Usage: \n\s+TLS Web Client Authentication\n$/);
    }
    await assert.rejects(
      issueCertificate(caDir, { name: 'root-1', role: 'root' as 'host' }),
      (err: unknown) => err instanceof UsageError && err.message.includes('invalid role "root"'),
    );
  });

  it('writes to --out when given', async () => {
    const out = join(root, 'elsewhere');
    const issued = await issueCertificate(caDir, { name: 'host-c', role: 'host', outDir: out });
    assert.equal(issued.certPath, join(out, 'cert.pem'));
    assert.deepEqual((await readdir(out)).sort(), ['ca.pem', 'cert.pem', 'key.pem']);
  });

  it('refuses to replace an issued certificate unless forced', async () => {
    const before = await readFile(join(caDir, 'issued', 'host-b', 'cert.pem'));
    await assert.rejects(
      issueCertificate(caDir, { name: 'host-b', role: 'host' }),
      (err: unknown) =>
        err instanceof ConflictError && err.message.includes(join(caDir, 'issued', 'host-b', 'cert.pem')),
    );
    assert.deepEqual(await readFile(join(caDir, 'issued', 'host-b', 'cert.pem')), before);
    const again = await issueCertificate(caDir, {
      name: 'host-b',
      role: 'host',
      ips: ['198.18.0.22'],
      force: true,
    });
    assert.deepEqual(again.ips, ['198.18.0.22']);
    assert.deepEqual((await readdir(again.dir)).sort(), ['ca.pem', 'cert.pem', 'key.pem']);
  });

  it('rejects bad input before touching anything, naming the bad value', async () => {
    const cases: [Parameters<typeof issueCertificate>[1], string][] = [
      [{ name: 'bad_name', role: 'host' }, 'bad_name'],
      [{ name: 'host-x', role: 'host', ips: ['198.18.0.300'] }, '198.18.0.300'],
      [{ name: 'host-x', role: 'host', dnsNames: ['no spaces'] }, 'no spaces'],
      [{ name: 'host-x', role: 'host', days: 0 }, '0'],
      [{ name: 'host-x', role: 'host', days: 20000 }, '20000'],
    ];
    for (const [options, bad] of cases) {
      await assert.rejects(
        issueCertificate(caDir, options),
        (err: unknown) => err instanceof UsageError && err.message.includes(`'${bad}'`),
      );
    }
    await assert.rejects(
      issueCertificate(join(root, 'no-ca'), { name: 'host-x', role: 'host' }),
      NotFoundError,
    );
    assert.deepEqual((await readdir(join(caDir, 'issued'))).sort(), [
      'host-a',
      'host-b',
      'metrics-1',
      'operator',
      'operator-1',
      'viewer-1',
    ]);
  });
});
