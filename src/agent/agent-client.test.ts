import assert from 'node:assert/strict';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { PeerError } from '../errors.js';
import { createTestPki, mtlsServerOptions, type TestPki, type TlsIdentity } from '../pki/index.js';
import { AgentClient } from './agent-client.js';

/** Real servers that misbehave in the ways a peer agent can: to tell "never arrived" from "maybe arrived". */
describe('AgentClient: whether a failed request can have reached the agent', () => {
  let pki: TestPki;
  let client: TlsIdentity;
  let server: TlsIdentity;
  const servers: Server[] = [];
  const sockets: Socket[] = [];

  before(async () => {
    pki = await createTestPki();
    client = await pki.issue('operator');
    server = await pki.issue('host-b');
  });
  after(() => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
    pki.dispose();
  });

  function listen(s: Server): Promise<number> {
    servers.push(s);
    return new Promise((resolve) =>
      s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)),
    );
  }

  async function failure(url: string): Promise<PeerError> {
    const c = new AgentClient(url, client, { peerName: 'host-b' });
    try {
      await c.post('/v1/incoming/m1/complete', {}, { timeoutMs: 500 });
    } catch (err) {
      assert.ok(err instanceof PeerError, String(err));
      return err;
    } finally {
      c.close();
    }
    assert.fail('the request succeeded');
  }

  it('connection refused: never arrived', async () => {
    const port = await listen(createTcpServer());
    servers.pop()?.close();
    await new Promise((r) => setTimeout(r, 50));
    const err = await failure(`https://127.0.0.1:${port}`);
    assert.match(err.message, /ECONNREFUSED/);
    assert.equal(err.notDelivered, true);
  });

  it('accepted but no TLS handshake within the timeout: never arrived', async () => {
    const port = await listen(createTcpServer((s) => sockets.push(s)));
    const err = await failure(`https://127.0.0.1:${port}`);
    assert.match(err.message, /did not answer/);
    assert.equal(err.notDelivered, true);
  });

  it('TLS up, request sent, no answer: may have arrived', async () => {
    const tls = createTlsServer(mtlsServerOptions(server), (s) => {
      sockets.push(s);
      s.resume();
    });
    const port = await listen(tls);
    const err = await failure(`https://127.0.0.1:${port}`);
    assert.match(err.message, /did not answer POST \/v1\/incoming\/m1\/complete within 500 ms/);
    assert.equal(err.notDelivered, false);
  });

  it('TLS up, then the connection dropped before an answer: may have arrived', async () => {
    const tls = createTlsServer(mtlsServerOptions(server), (s) => {
      s.once('data', () => s.destroy());
    });
    const port = await listen(tls);
    const err = await failure(`https://127.0.0.1:${port}`);
    assert.equal(err.notDelivered, false);
  });
});
