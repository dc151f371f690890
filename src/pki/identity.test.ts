import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateError, NotFoundError } from '../errors.js';
import { initCa } from './ca.js';
import { checkTlsIdentity, loadTlsIdentity } from './identity.js';
import { issueCertificate } from './issue.js';

describe('pki identity', () => {
  let root: string;
  let dirA: string;
  let dirB: string;
  let dirOther: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-identity-test-'));
    await initCa(join(root, 'ca'));
    await initCa(join(root, 'other-ca'));
    dirA = (await issueCertificate(join(root, 'ca'), { name: 'host-a', role: 'host', ips: ['198.18.0.1'] }))
      .dir;
    dirB = (await issueCertificate(join(root, 'ca'), { name: 'host-b', role: 'host' })).dir;
    dirOther = (await issueCertificate(join(root, 'other-ca'), { name: 'host-a', role: 'host' })).dir;
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('loads an issued directory and says what it names', async () => {
    const identity = await loadTlsIdentity(dirA);
    assert.deepEqual(identity.cert, await readFile(join(dirA, 'cert.pem')));
    const info = checkTlsIdentity(identity);
    assert.equal(info.commonName, 'host-a');
    assert.equal(info.issuer, 'vmferry CA');
    assert.deepEqual(info.dnsNames, ['host-a']);
    assert.deepEqual(info.ips, ['198.18.0.1']);
    assert.equal(info.isCa, false);
  });

  it("refuses a key that is not the certificate's", async () => {
    const a = await loadTlsIdentity(dirA);
    const b = await loadTlsIdentity(dirB);
    assert.throws(
      () => checkTlsIdentity({ ...a, key: b.key }, { source: dirA }),
      (err: unknown) =>
        err instanceof CertificateError &&
        err.message.includes(join(dirA, 'key.pem')) &&
        /not the private key/.test(err.message),
    );
  });

  it('refuses a certificate from another CA', async () => {
    const a = await loadTlsIdentity(dirA);
    const other = await loadTlsIdentity(dirOther);
    assert.throws(
      () => checkTlsIdentity({ ...a, cert: other.cert, key: other.key }),
      (err: unknown) => err instanceof CertificateError && /not signed by the CA/.test(err.message),
    );
  });

  it('refuses certificates outside their validity period', async () => {
    const a = await loadTlsIdentity(dirA);
    assert.throws(() => checkTlsIdentity(a, { now: new Date('2001-01-01T00:00:00Z') }), /valid only from/);
    await assert.rejects(
      loadTlsIdentity(dirA, { now: new Date(Date.now() + 900 * 86_400_000) }),
      CertificateError,
    );
  });

  it('names a missing or unreadable file', async () => {
    const broken = join(root, 'broken');
    await assert.rejects(
      loadTlsIdentity(broken),
      (err: unknown) => err instanceof NotFoundError && err.message.includes(join(broken, 'ca.pem')),
    );
    const a = await loadTlsIdentity(dirA);
    await rm(join(root, 'garbled'), { recursive: true, force: true });
    await mkdir(join(root, 'garbled'));
    await writeFile(join(root, 'garbled', 'ca.pem'), a.ca);
    await writeFile(join(root, 'garbled', 'cert.pem'), a.cert);
    await writeFile(join(root, 'garbled', 'key.pem'), 'not a key');
    await assert.rejects(
      loadTlsIdentity(join(root, 'garbled')),
      (err: unknown) =>
        err instanceof CertificateError && err.message.includes(join(root, 'garbled', 'key.pem')),
    );
  });
});
