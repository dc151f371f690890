/**
 * The tunnelled transport with real worker processes, real TLS and real
 * sockets, no QEMU: unix sockets stand in for the QEMUs on both ends and a
 * tiny HTTP server for the agent's internal API.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type Server as HttpServer,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { createTestPki, type TestPki, type TlsIdentity } from '../../src/pki/index.js';
import { TlsFrontend, type TransportEvent } from '../../src/transport/index.js';
import { ROUTE_ROLES } from '../../src/agent/index.js';

const MiB = 1024 * 1024;

/** A pseudo-random byte stream (AES-CTR keystream) and its hash, without holding it in memory. */
function keystream(seed: string): (bytes: number) => Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (bytes) => cipher.update(Buffer.alloc(bytes));
}

/** Writes `total` pseudo-random bytes with back-pressure; resolves with their sha256. */
function sendStream(
  socket: Socket,
  seed: string,
  total: number,
  end: boolean,
  prefix?: Buffer,
): Promise<string> {
  const next = keystream(seed);
  const hash = createHash('sha256');
  if (prefix !== undefined) {
    hash.update(prefix);
    socket.write(prefix);
  }
  let sent = 0;
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    const pump = (): void => {
      while (sent < total) {
        const chunk = next(Math.min(MiB, total - sent));
        sent += chunk.length;
        hash.update(chunk);
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      if (end) socket.end();
      resolve(hash.digest('hex'));
    };
    pump();
  });
}

function receiveStream(socket: Socket): Promise<{ bytes: number; sha: string; head: Buffer }> {
  const hash = createHash('sha256');
  let bytes = 0;
  let head = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      if (head.length < 8) head = Buffer.concat([head, d.subarray(0, 8 - head.length)]);
      hash.update(d);
      bytes += d.length;
    });
    socket.once('end', () => resolve({ bytes, sha: hash.digest('hex'), head }));
    socket.once('error', reject);
  });
}

function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path, allowHalfOpen: true } as never);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** True when the peer closed `socket` (EOF, reset or close) within `ms`; then destroys it. */
function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.closed || socket.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (closed: boolean): void => {
      clearTimeout(t);
      if (closed) socket.destroy();
      resolve(closed);
    };
    const t = setTimeout(() => done(false), ms);
    socket.once('end', () => done(true));
    socket.once('close', () => done(true));
    socket.once('error', () => done(true));
    socket.resume();
  });
}

function lastOf<T extends TransportEvent['type']>(
  events: TransportEvent[],
  type: T,
): Extract<TransportEvent, { type: T }> | undefined {
  const found = events.filter((e) => e.type === type);
  return found[found.length - 1] as Extract<TransportEvent, { type: T }> | undefined;
}

async function waitFor(what: string, predicate: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Sink {
  path: string;
  server: Server;
  connections: Socket[];
  close(): void;
}

/** A unix socket standing in for the destination QEMU's migrate-incoming socket. */
async function listenSink(
  path: string,
  onConnection: (s: Socket) => void = (s) => s.resume(),
): Promise<Sink> {
  const connections: Socket[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    connections.push(s);
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    server,
    connections,
    close() {
      for (const c of connections) c.destroy();
      server.close();
    },
  };
}

describe('tunnelled transport (worker processes, TLS, unix sockets)', () => {
  let dir: string;
  let pki: TestPki;
  let rogue: TestPki;
  let idA: TlsIdentity;
  let idB: TlsIdentity;
  let idC: TlsIdentity;
  let rogueA: TlsIdentity;
  let api: HttpServer;
  const apiSeen: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[] = [];
  let dst: TlsFrontend;
  let src: TlsFrontend;
  const dstEvents: TransportEvent[] = [];
  const srcEvents: TransportEvent[] = [];
  const token = 'tok-' + randomBytes(16).toString('hex');
  let migrations = 0;
  const nextId = (): string => `mig-${++migrations}`;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmf-tunnel-'));
    pki = await createTestPki('vmferry-test-ca');
    rogue = await createTestPki('someone-else-ca');
    idA = await pki.issue('agent-a');
    idB = await pki.issue('agent-b');
    idC = await pki.issue('agent-c');
    rogueA = await rogue.issue('agent-a');
    api = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        apiSeen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const text = JSON.stringify({ peer: req.headers['x-vmferry-peer-cn'], echo: body });
        res.writeHead(req.url === '/v1/missing' ? 404 : 200, { 'content-type': 'application/json' });
        res.end(text);
      });
    });
    await new Promise<void>((resolve) => api.listen(join(dir, 'api.sock'), resolve));
    dst = await TlsFrontend.start({
      listen: { host: '127.0.0.1', port: 0 },
      localPath: join(dir, 'b-local.sock'),
      tls: idB,
      internalApiPath: join(dir, 'api.sock'),
      workers: 2,
      tunnelRoles: ROUTE_ROLES.tunnel,
      onEvent: (e) => dstEvents.push(e),
    });
    src = await TlsFrontend.start({
      localPath: join(dir, 'a-local.sock'),
      tls: idA,
      internalApiPath: join(dir, 'api.sock'),
      workers: 2,
      tunnelRoles: ROUTE_ROLES.tunnel,
      onEvent: (e) => srcEvents.push(e),
    });
  });

  after(async () => {
    await src?.close();
    await dst?.close();
    api?.close();
    pki?.dispose();
    rogue?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  function remote(): { host: string; port: number } {
    const a = dst.address;
    assert.ok(a !== undefined);
    return a;
  }

  /** A sink standing in for the destination QEMU, and the destination agent expecting tunnels into it. */
  async function acceptInto(
    migrationId: string,
    maxConnections: number,
    onConnection?: (s: Socket) => void,
  ): Promise<Sink> {
    const sink = await listenSink(join(dir, `${migrationId}-in.sock`), onConnection);
    await dst.acceptTunnel({
      migrationId,
      token,
      peerCommonName: 'agent-a',
      targetPath: sink.path,
      maxConnections,
    });
    return sink;
  }

  /** The source agent's tunnel for a migration; a twist changes what it presents. */
  function openSource(
    migrationId: string,
    twist: { migrationId?: string; token?: string; tls?: TlsIdentity; expectedPeerCommonName?: string } = {},
  ): ReturnType<TlsFrontend['openSourceTunnel']> {
    return src.openSourceTunnel({
      migrationId: twist.migrationId ?? migrationId,
      token: twist.token ?? token,
      listenPath: join(dir, `${migrationId}-out.sock`),
      remote: remote(),
      expectedPeerCommonName: twist.expectedPeerCommonName ?? 'agent-b',
      ...(twist.tls !== undefined ? { tls: twist.tls } : {}),
    });
  }

  it('relays 4 channels of 64 MiB byte for byte, replies too, main channel first', async () => {
    const migrationId = nextId();
    const received: Promise<{ bytes: number; sha: string; head: Buffer }>[] = [];
    const replies: Promise<string>[] = [];
    const sink = await acceptInto(migrationId, 4, (s) => {
      received.push(receiveStream(s));
      // The destination talks back on every channel (QEMU's return path does, a little).
      replies.push(sendStream(s, `reply-${received.length}`, 8 * MiB, false));
      void Promise.all([received.at(-1), replies.at(-1)]).then(() => s.end());
    });
    const tunnel = await openSource(migrationId);
    const channels = await Promise.all([0, 1, 2, 3].map(() => connectUnix(tunnel.listenPath)));
    const back = channels.map((c) => receiveStream(c));
    const sent = await Promise.all(
      channels.map((c, i) => sendStream(c, `channel-${i}`, 64 * MiB, true, Buffer.from(`chan-${i}..`))),
    );
    await waitFor('4 channels at the destination', () => received.length === 4);
    const got = await Promise.all(received);
    const gotBack = await Promise.all(back);
    // The first connection accepted at the destination is the first one QEMU made (its main channel).
    assert.equal(got[0]?.head.subarray(0, 6).toString(), 'chan-0');
    for (let i = 0; i < 4; i++) {
      const at = got.findIndex((g) => g.head.subarray(0, 6).toString() === `chan-${i}`);
      assert.notEqual(at, -1, `channel ${i} arrived`);
      assert.equal(got[at]?.bytes, 64 * MiB + 8);
    }
    assert.deepEqual(got.map((g) => g.sha).sort(), [...sent].sort());
    const replyHashes = await Promise.all(replies);
    assert.deepEqual(gotBack.map((g) => g.sha).sort(), [...replyHashes].sort());
    for (const c of channels) assert.ok(await closedWithin(c, 3000));
    const srcStats = await tunnel.close();
    const dstStats = await dst.closeTunnel(migrationId);
    assert.equal(srcStats.bytesFromQemu, 4 * (64 * MiB + 8));
    assert.equal(srcStats.bytesToQemu, 4 * 8 * MiB);
    assert.equal(dstStats.bytesToQemu, 4 * (64 * MiB + 8));
    assert.equal(dstStats.connectionsOpened, 4);
    assert.equal(existsSync(tunnel.listenPath), false);
    // Each closed connection is reported with its own byte counts.
    const closedHere = (): Extract<TransportEvent, { type: 'tunnel-connection-closed' }>[] =>
      srcEvents.filter(
        (e) => e.type === 'tunnel-connection-closed' && e.migrationId === migrationId,
      ) as Extract<TransportEvent, { type: 'tunnel-connection-closed' }>[];
    await waitFor('4 close reports', () => closedHere().length === 4);
    assert.deepEqual(
      closedHere().map((e) => e.bytesFromQemu),
      [64 * MiB + 8, 64 * MiB + 8, 64 * MiB + 8, 64 * MiB + 8],
    );
    sink.close();
  });

  it('proxies API requests with the verified peer CN, replacing a spoofed one', async () => {
    const call = (options: { method: string; path: string; body?: string; socketPath?: string }) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          {
            ...(options.socketPath !== undefined
              ? { socketPath: options.socketPath }
              : { host: '127.0.0.1', port: remote().port }),
            method: options.method,
            path: options.path,
            ca: idA.ca,
            cert: idA.cert,
            key: idA.key,
            checkServerIdentity: () => undefined,
            headers: { 'x-vmferry-peer-cn': 'root', 'content-type': 'application/json' },
          },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end(options.body);
      });
    const get = await call({ method: 'GET', path: '/v1/host?x=1' });
    assert.equal(get.status, 200);
    assert.deepEqual(JSON.parse(get.body), { peer: 'agent-a', echo: '' });
    const big = JSON.stringify({ data: 'y'.repeat(300_000) });
    const post = await call({ method: 'POST', path: '/v1/migrations', body: big });
    assert.equal(post.status, 200);
    assert.equal((JSON.parse(post.body) as { echo: string }).echo, big);
    const missing = await call({ method: 'GET', path: '/v1/missing', socketPath: join(dir, 'b-local.sock') });
    assert.equal(missing.status, 404);
    const seen = apiSeen.find((s) => s.method === 'POST');
    assert.equal(seen?.headers['x-vmferry-peer-cn'], 'agent-a');
    assert.equal(seen?.url, '/v1/migrations');
    assert.ok(apiSeen.every((s) => s.headers['x-vmferry-peer-cn'] === 'agent-a'));
  });

  /** Opens a source tunnel with some twist and checks that its one connection is refused and closed. */
  async function expectRefused(twist: {
    migrationId?: string;
    token?: string;
    tls?: TlsIdentity;
    expectedPeerCommonName?: string;
  }): Promise<void> {
    const migrationId = nextId();
    const sink = await acceptInto(migrationId, 4);
    const failuresBefore = srcEvents.filter((e) => e.type === 'source-connect-failed').length;
    const tunnel = await openSource(migrationId, twist);
    const qemu = await connectUnix(tunnel.listenPath);
    qemu.on('error', () => undefined);
    qemu.resume();
    qemu.write('QEVM');
    assert.ok(await closedWithin(qemu, 5000), 'the QEMU-side connection is closed');
    await waitFor(
      'the failure report',
      () => srcEvents.filter((e) => e.type === 'source-connect-failed').length > failuresBefore,
    );
    assert.equal(sink.connections.length, 0, 'nothing reached the destination QEMU');
    await tunnel.close();
    await dst.closeTunnel(migrationId);
    sink.close();
  }

  it('refuses a wrong token', async () => {
    await expectRefused({ token: 'tok-wrong-wrong-wrong-wrong' });
    const refusal = lastOf(dstEvents, 'tunnel-refused');
    assert.ok(refusal?.type === 'tunnel-refused' && /token/.test(refusal.reason) && refusal.status === 403);
    const failure = lastOf(srcEvents, 'source-connect-failed');
    assert.ok(failure?.type === 'source-connect-failed' && /403/.test(failure.reason));
  });

  it('refuses an unknown migration id', async () => {
    await expectRefused({ migrationId: 'mig-never-prepared' });
    const refusal = lastOf(dstEvents, 'tunnel-refused');
    assert.ok(refusal?.type === 'tunnel-refused' && /no prepared tunnel/.test(refusal.reason));
  });

  it('refuses a certificate from our CA with the wrong CN', async () => {
    await expectRefused({ tls: idC });
    const refusal = lastOf(dstEvents, 'tunnel-refused');
    assert.ok(refusal?.type === 'tunnel-refused' && refusal.peerCommonName === 'agent-c');
  });

  it('fails the handshake of a client certificate from another CA', async () => {
    const before = dstEvents.filter((e) => e.type === 'tls-handshake-failed').length;
    await expectRefused({ tls: { ...rogueA, ca: idA.ca } });
    await waitFor(
      'the handshake failure',
      () => dstEvents.filter((e) => e.type === 'tls-handshake-failed').length > before,
    );
    // And a raw client with no certificate at all gets nowhere either.
    const bare = tlsConnect({
      host: '127.0.0.1',
      port: remote().port,
      ca: idA.ca,
      checkServerIdentity: () => undefined,
    });
    const outcome = await new Promise<string>((resolve) => {
      bare.on('error', (e: Error) => resolve(`error ${e.message}`));
      bare.on('secureConnect', () => bare.write('GET /v1/host HTTP/1.1\r\nHost: x\r\n\r\n'));
      bare.on('data', (d: Buffer) => resolve(`data ${d.toString()}`));
      bare.on('close', () => resolve('closed'));
    });
    assert.doesNotMatch(outcome, /^data/);
    bare.destroy();
  });

  it('refuses to relay to a destination agent that is not the expected one', async () => {
    await expectRefused({ expectedPeerCommonName: 'agent-z' });
    const failure = lastOf(srcEvents, 'source-connect-failed');
    assert.ok(failure?.type === 'source-connect-failed' && /agent-z/.test(failure.reason));
  });

  it('refuses connections beyond the budget of a tunnel', async () => {
    const migrationId = nextId();
    const sink = await acceptInto(migrationId, 1);
    const tunnel = await openSource(migrationId);
    const first = await connectUnix(tunnel.listenPath);
    await waitFor('the first connection', () => sink.connections.length === 1);
    const second = await connectUnix(tunnel.listenPath);
    second.on('error', () => undefined);
    second.resume();
    assert.ok(await closedWithin(second, 5000));
    const refusal = lastOf(dstEvents, 'tunnel-refused');
    assert.ok(refusal?.type === 'tunnel-refused' && refusal.status === 429);
    assert.equal(first.closed, false);
    first.destroy();
    await tunnel.close();
    await dst.closeTunnel(migrationId);
    sink.close();
  });

  it('closes the QEMU-side connection promptly when the destination side breaks midway', async () => {
    const migrationId = nextId();
    let killed = false;
    const sink = await acceptInto(migrationId, 2, (s) => {
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
        if (n > 4 * MiB && !killed) {
          killed = true;
          s.destroy();
        }
      });
    });
    const tunnel = await openSource(migrationId);
    const qemu = await connectUnix(tunnel.listenPath);
    qemu.on('error', () => undefined);
    // Like QEMU: keeps writing until the socket fails, never ends by itself.
    const next = keystream('endless');
    const block = next(MiB);
    const pump = (): void => {
      while (!qemu.destroyed && qemu.write(block));
      if (!qemu.destroyed) qemu.once('drain', pump);
    };
    pump();
    await waitFor('the kill', () => killed, 10_000);
    const killedAt = Date.now();
    assert.ok(await closedWithin(qemu, 3000), 'the source QEMU connection closed');
    assert.ok(Date.now() - killedAt < 3000);
    await tunnel.close();
    await dst.closeTunnel(migrationId);
    sink.close();
  });

  it('tears down live connections on closeTunnel, and SourceTunnel.close removes its socket', async () => {
    const migrationId = nextId();
    const sink = await acceptInto(migrationId, 4);
    const tunnel = await openSource(migrationId);
    const qemus = await Promise.all([0, 1, 2].map(() => connectUnix(tunnel.listenPath)));
    for (const q of qemus) q.on('error', () => undefined);
    await waitFor('3 connections', () => sink.connections.length === 3);
    const live = await dst.tunnelStats(migrationId);
    assert.equal(live.connectionsOpen, 3);
    await dst.closeTunnel(migrationId);
    for (const q of qemus) assert.ok(await closedWithin(q, 3000));
    for (const s of sink.connections) assert.ok(await closedWithin(s, 3000));
    // The tunnel is gone: a new connection is refused.
    const late = await connectUnix(tunnel.listenPath);
    late.on('error', () => undefined);
    late.resume();
    assert.ok(await closedWithin(late, 5000));
    await tunnel.close();
    assert.equal(existsSync(tunnel.listenPath), false);
    sink.close();
  });

  it('restarts a worker that dies, with the tunnels it must know', async () => {
    const migrationId = nextId();
    const sink = await acceptInto(migrationId, 8, (s) => {
      s.pipe(s);
    });
    const victim = dst.pool.pids[0];
    assert.ok(victim !== undefined);
    process.kill(victim, 'SIGKILL');
    await waitFor('the restart', () => dst.pool.pids[0] !== undefined && dst.pool.pids[0] !== victim);
    assert.ok(dstEvents.some((e) => e.type === 'worker-exited' && e.pid === victim));
    const tunnel = await openSource(migrationId);
    // Connections go round-robin, so some of these land on the new worker.
    for (let i = 0; i < 4; i++) {
      const q = await connectUnix(tunnel.listenPath);
      const echoed = new Promise<string>((resolve) => q.once('data', (d: Buffer) => resolve(d.toString())));
      q.write(`ping-${i}`);
      assert.equal(await echoed, `ping-${i}`);
      q.destroy();
    }
    const stats = await dst.stats();
    assert.equal(stats.length, 2);
    assert.ok(stats.every((w) => w.cpuUserMicros > 0));
    assert.ok(stats.some((w) => w.restarts === 1));
    assert.ok(stats.every((w) => (w.destinations[migrationId]?.connectionsOpened ?? 0) >= 1));
    await tunnel.close();
    await dst.closeTunnel(migrationId);
    sink.close();
  });
});
