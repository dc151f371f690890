import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateError, ConflictError, HostSetupError, NotFoundError } from '../errors.js';
import { initCa, loadCa } from './ca.js';
import { type OpensslRunner, createOpensslRunner } from './openssl.js';

function extensions(certPath: string): string {
  return execFileSync('openssl', ['x509', '-in', certPath, '-noout', '-ext', 'basicConstraints,keyUsage'], {
    encoding: 'utf8',
  });
}

describe('pki ca', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-ca-test-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates an ECDSA P-256 CA with a 0600 key and CA extensions marked critical', async () => {
    const ca = await initCa(join(root, 'ca'), { days: 3650 });
    assert.equal(ca.certPath, join(root, 'ca', 'ca.pem'));
    assert.equal(ca.keyPath, join(root, 'ca', 'ca-key.pem'));
    assert.equal((await stat(ca.keyPath)).mode & 0o777, 0o600);
    assert.deepEqual(
      (await readdir(ca.dir)).sort(),
      ['ca-key.pem', 'ca.pem'],
      'no scratch files left behind',
    );
    const loaded = await loadCa(ca.dir);
    const cert: X509Certificate = loaded.cert;
    assert.equal(cert.subject, 'CN=vmferry CA');
    assert.equal(cert.ca, true);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 86_400_000);
    assert.ok(years > 9.9 && years < 10.1, `about ten years, got ${years}`);
    const ext = extensions(ca.certPath);
    assert.match(ext, /Basic Constraints: critical\s+CA:TRUE/);
    assert.match(ext, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
  });

  it('refuses to overwrite an existing CA, naming the file', async () => {
    const dir = join(root, 'ca');
    await assert.rejects(
      initCa(dir),
      (err: unknown) => err instanceof ConflictError && err.message.includes(join(dir, 'ca-key.pem')),
    );
    const half = join(root, 'half');
    await initCa(half);
    await rm(join(half, 'ca-key.pem'));
    await assert.rejects(
      initCa(half),
      (err: unknown) => err instanceof ConflictError && err.message.includes(join(half, 'ca.pem')),
    );
  });

  it('leaves nothing behind when openssl fails', async () => {
    const calls: string[][] = [];
    const failing: OpensslRunner = async (args) => {
      calls.push([...args]);
      if (args[0] === 'req') throw new CertificateError('openssl req failed: boom');
      return createOpensslRunner()(args);
    };
    const dir = join(root, 'failed');
    await assert.rejects(initCa(dir, { openssl: failing }), /boom/);
    assert.deepEqual(
      calls.map((c) => c[0]),
      ['genpkey', 'req'],
    );
    assert.deepEqual(await readdir(dir), []);
  });

  it('reports a missing openssl as a host setup problem', async () => {
    await assert.rejects(
      initCa(join(root, 'no-openssl'), { openssl: createOpensslRunner('/nonexistent/openssl') }),
      (err: unknown) => err instanceof HostSetupError && err.hint !== undefined,
    );
  });

  it('loadCa explains a missing CA and refuses a certificate that is not a CA', async () => {
    await assert.rejects(loadCa(join(root, 'nothing')), NotFoundError);
    const dir = join(root, 'ca');
    const leaf = join(root, 'not-a-ca');
    await initCa(leaf);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-new',
        '-key',
        join(leaf, 'ca-key.pem'),
        '-subj',
        '/CN=leaf',
        '-addext',
        'basicConstraints=CA:FALSE',
        '-out',
        join(leaf, 'ca.pem'),
      ],
      { stdio: 'ignore' },
    );
    await assert.rejects(
      loadCa(leaf),
      (err: unknown) => err instanceof CertificateError && /not a CA/.test(err.message),
    );
    await assert.rejects(
      loadCa(dir, new Date('2100-01-01T00:00:00Z')),
      (err: unknown) => err instanceof CertificateError && /valid only/.test(err.message),
    );
    await writeFile(join(leaf, 'ca.pem'), 'garbage');
    await assert.rejects(
      loadCa(leaf),
      (err: unknown) => err instanceof CertificateError && /not a PEM certificate/.test(err.message),
    );
  });
});
