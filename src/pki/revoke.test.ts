import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { CertificateError, NotFoundError } from '../errors.js';
import { initCa } from './ca.js';
import { loadTlsIdentity, type TlsIdentity } from './identity.js';
import { issueCertificate } from './issue.js';
import { revokeCertificate } from './revoke.js';
import { writeQemuTlsCredsDir } from './qemu-tls-creds.js';
import { mtlsClientOptions, mtlsServerOptions } from './tls-options.js';

/** Connects with `client` to a server with `server`; true when the server greeted it (both sides accepted). */
async function handshake(server: TlsIdentity, client: TlsIdentity, serverName = 'host'): Promise<boolean> {
  const srv = tls.createServer(mtlsServerOptions(server), (s) => s.end('hello'));
  srv.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  try {
    return await new Promise<boolean>((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        ...mtlsClientOptions(client, { peerName: serverName }),
      });
      socket.once('data', (d: Buffer) => resolve(d.toString() === 'hello'));
      socket.once('error', () => resolve(false));
      socket.once('close', () => resolve(false));
    });
  } finally {
    srv.close();
  }
}

describe('pki revocation (vmferry ca revoke)', () => {
  let root: string;
  let ca: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-revoke-test-'));
    ca = join(root, 'ca');
    await initCa(ca);
    for (const name of ['host', 'good', 'mallory'])
      await issueCertificate(ca, { name, role: 'host', ips: ['127.0.0.1'] });
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('makes a CRL signed by the CA listing the serial, and copies it into every issued identity', async () => {
    const r = await revokeCertificate(ca, { name: 'mallory' });
    assert.equal(r.newlyRevoked, true);
    assert.equal(r.revokedCount, 1);
    assert.equal(r.copiedTo.length, 3);
    const text = execFileSync(
      'openssl',
      ['crl', '-in', r.crlPath, '-noout', '-text', '-CAfile', join(ca, 'ca.pem')],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    assert.match(text, new RegExp(`Serial Number: ${r.serial}`));
    assert.equal(
      await readFile(join(ca, 'issued', 'good', 'crl.pem'), 'utf8'),
      await readFile(r.crlPath, 'utf8'),
    );
    // Again: the same serial once, a new CRL number.
    const again = await revokeCertificate(ca, { name: 'mallory' });
    assert.equal(again.newlyRevoked, false);
    assert.equal(again.revokedCount, 1);
    assert.match(
      execFileSync('openssl', ['crl', '-in', again.crlPath, '-noout', '-crlnumber'], { encoding: 'utf8' }),
      /crlNumber=(0x)?0*2\b/,
    );
  });

  it('agents loading the CRL refuse the revoked certificate as client and as server, and keep the others', async () => {
    const host = await loadTlsIdentity(join(ca, 'issued', 'host'));
    const good = await loadTlsIdentity(join(ca, 'issued', 'good'));
    const mallory = await loadTlsIdentity(join(ca, 'issued', 'mallory'));
    assert.ok(host.crl !== undefined, 'the identity carries the CRL');
    assert.equal(await handshake(host, good), true);
    assert.equal(await handshake(host, mallory), false, 'a revoked client is refused');
    // A revoked server certificate is refused by a client holding the CRL.
    const malloryServer = { ...mallory, crl: undefined };
    assert.equal(await handshake(malloryServer, good, 'mallory'), false, 'a revoked server is refused');
    const { crl: _unused, ...goodWithoutCrl } = good;
    assert.equal(await handshake(malloryServer, goodWithoutCrl, 'mallory'), true, 'only the CRL refuses it');
    // Without the CRL the CA's signature alone would still admit it: the CRL is what refuses.
    const { crl: _ignored, ...hostWithoutCrl } = host;
    assert.equal(await handshake(hostWithoutCrl, { ...mallory, crl: undefined }), true);
  });

  it('a new identity gets the current CRL; QEMU TLS credentials get it as ca-crl.pem', async () => {
    const issued = await issueCertificate(ca, { name: 'late', role: 'host' });
    assert.equal(
      await readFile(join(issued.dir, 'crl.pem'), 'utf8'),
      await readFile(join(ca, 'crl.pem'), 'utf8'),
    );
    const creds = await writeQemuTlsCredsDir(join(root, 'qemu-tls'), await loadTlsIdentity(issued.dir));
    assert.equal(
      await readFile(join(creds.dir, 'ca-crl.pem'), 'utf8'),
      await readFile(join(ca, 'crl.pem'), 'utf8'),
    );
  });

  it('names what is wrong: unknown name, foreign certificate, a damaged crl.pem', async () => {
    await assert.rejects(revokeCertificate(ca, { name: 'nobody' }), NotFoundError);
    const other = join(root, 'other');
    await initCa(other);
    const foreign = await issueCertificate(other, { name: 'x', role: 'host' });
    await assert.rejects(
      revokeCertificate(ca, { certPath: foreign.certPath }),
      (err: unknown) => err instanceof CertificateError && /was not issued by the CA/.test(err.message),
    );
    await writeFile(join(ca, 'issued', 'good', 'crl.pem'), 'garbage');
    await assert.rejects(
      loadTlsIdentity(join(ca, 'issued', 'good')),
      (err: unknown) =>
        err instanceof CertificateError &&
        /crl\.pem is not a PEM certificate revocation list/.test(err.message),
    );
  });
});
