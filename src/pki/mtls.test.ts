import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { initCa } from './ca.js';
import { type TlsIdentity, loadTlsIdentity } from './identity.js';
import { issueCertificate } from './issue.js';
import { type PeerIdentity, peerIdentity } from './peer.js';
import { mtlsClientOptions, mtlsServerOptions } from './tls-options.js';

interface Attempt {
  ok: boolean;
  error?: string;
}

/**
 * Connects and waits for the server's greeting. In TLS 1.3 the client sees
 * its handshake finish before the server has judged its certificate, so only
 * the greeting (sent from 'secureConnection') proves the server accepted it.
 */
function attempt(port: number, options: tls.ConnectionOptions): Promise<Attempt> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options });
    let settled = false;
    const settle = (a: Attempt): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(a);
    };
    socket.once('data', (d: Buffer) => settle({ ok: d.toString() === 'hello' }));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      settle({ ok: false, error: err.code ?? err.message }),
    );
    socket.once('close', () => settle({ ok: false, error: 'closed' }));
  });
}

describe('pki mutual TLS', () => {
  let root: string;
  let hostA: TlsIdentity;
  let hostB: TlsIdentity;
  let stranger: TlsIdentity;
  let server: tls.Server;
  let port: number;
  const accepted: PeerIdentity[] = [];
  const refused: string[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-mtls-test-'));
    const ca = join(root, 'ca');
    const otherCa = join(root, 'other-ca');
    await initCa(ca);
    await initCa(otherCa);
    hostA = await loadTlsIdentity(
      (await issueCertificate(ca, { name: 'host-a', role: 'host', ips: ['127.0.0.1'] })).dir,
    );
    hostB = await loadTlsIdentity(
      (
        await issueCertificate(ca, {
          name: 'host-b',
          role: 'host',
          ips: ['198.18.0.2'],
          dnsNames: ['b.example.net'],
        })
      ).dir,
    );
    // Same name as a real host, and it trusts our CA: only its issuer differs.
    const foreign = await loadTlsIdentity(
      (await issueCertificate(otherCa, { name: 'host-b', role: 'host' })).dir,
    );
    stranger = { ...foreign, ca: hostA.ca };

    server = tls.createServer(mtlsServerOptions(hostA), (socket) => {
      const peer = peerIdentity(socket);
      if (peer !== undefined) accepted.push(peer);
      socket.end('hello');
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException) => refused.push(err.code ?? err.message));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(root, { recursive: true, force: true });
  });

  it('accepts a client with a certificate from our CA and tells who it is', async () => {
    const before = accepted.length;
    const result = await attempt(port, mtlsClientOptions(hostB));
    assert.deepEqual(result, { ok: true });
    const peer = accepted[before];
    assert.ok(peer !== undefined);
    assert.equal(peer.commonName, 'host-b');
    assert.deepEqual(peer.dnsNames, ['host-b', 'b.example.net']);
    assert.deepEqual(peer.ips, ['198.18.0.2']);
    assert.match(peer.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('refuses a client without a certificate', async () => {
    const before = refused.length;
    const acceptedBefore = accepted.length;
    const { cert: _c, key: _k, ...noCert } = mtlsClientOptions(hostB);
    const result = await attempt(port, noCert);
    assert.equal(result.ok, false);
    assert.equal(accepted.length, acceptedBefore);
    assert.ok(refused.length > before);
    assert.match(refused[before] ?? '', /PEER_DID_NOT_RETURN_A_CERTIFICATE/);
  });

  it('refuses a client whose certificate comes from another CA', async () => {
    // Node checks the chain after OpenSSL's handshake and destroys the socket
    // before 'secureConnection': the client never gets the greeting.
    const before = accepted.length;
    const result = await attempt(port, mtlsClientOptions(stranger));
    assert.equal(result.ok, false);
    assert.equal(accepted.length, before);
  });

  it('client refuses a server from another CA or with another name', async () => {
    const { ca: _ca, ...rest } = mtlsClientOptions(hostB);
    const trustsOtherCa = { ...rest, ca: stranger.cert };
    assert.equal((await attempt(port, trustsOtherCa)).ok, false);
    const wrongName = await attempt(port, mtlsClientOptions(hostB, { peerName: 'host-c' }));
    assert.equal(wrongName.ok, false);
    assert.equal(wrongName.error, 'ERR_TLS_CERT_ALTNAME_INVALID');
    // By name: host-a's certificate names host-a, whatever address was dialled.
    assert.deepEqual(await attempt(port, mtlsClientOptions(hostB, { peerName: 'host-a' })), { ok: true });
  });

  it('works for HTTPS and lets handlers authorize by CN', async () => {
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      try {
        const peer = peerIdentity(req.socket as tls.TLSSocket);
        if (peer?.commonName !== 'host-b') throw new Error(`peer '${peer?.commonName}' is not allowed here`);
        res.end(`hello ${peer.commonName}`);
      } catch (err) {
        res.statusCode = 403;
        res.end((err as Error).message);
      }
    };
    const api = https.createServer(mtlsServerOptions(hostA), handler);
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const apiPort = (api.address() as AddressInfo).port;
    const get = (identity: TlsIdentity): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = https.request(
          {
            ...mtlsClientOptions(identity, { peerName: 'host-a' }),
            host: '127.0.0.1',
            port: apiPort,
            path: '/',
            agent: false,
          },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    try {
      assert.deepEqual(await get(hostB), { status: 200, body: 'hello host-b' });
      const self = await get(hostA);
      assert.equal(self.status, 403);
      assert.match(self.body, /peer 'host-a' is not allowed/);
    } finally {
      await new Promise<void>((resolve) => api.close(() => resolve()));
    }
  });

  it('names nobody on an unauthenticated socket', () => {
    const fake = {
      authorized: false,
      authorizationError: new Error('UNABLE_TO_VERIFY_LEAF_SIGNATURE'),
    } as unknown as tls.TLSSocket;
    assert.equal(peerIdentity(fake), undefined);
  });
});
