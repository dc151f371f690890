/**
 * The native relay (native/vmferry-relay.c) with real processes, real TLS and real
 * sockets, no QEMU: unix sockets stand in for the QEMUs. It must carry streams
 * byte for byte with either relay on the other end, and refuse exactly what the
 * front door refuses, with the same answer, relaying nothing.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { ROUTE_ROLES } from '../../src/agent/index.js';
import {
  createTestPki,
  issuedIdentityDir,
  loadTlsIdentity,
  type Role,
  type TestPki,
  type TlsIdentity,
} from '../../src/pki/index.js';
import {
  NativeRelay,
  TlsFrontend,
  nativeRelayAvailability,
  type NativeRelayTuning,
  type TransportEvent,
  type WorkerEvent,
} from '../../src/transport/index.js';

const MiB = 1024 * 1024;

interface Sink {
  path: string;
  server: Server;
  connections: Socket[];
  received: Promise<{ bytes: number; sha: string; head: string }>[];
  close(): void;
}

/** A unix socket standing in for the destination QEMU: hashes what each connection brings, answers `reply` bytes. */
async function listenSink(path: string, reply = 0): Promise<Sink> {
  const connections: Socket[] = [];
  const received: Sink['received'] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    connections.push(s);
    s.on('error', () => undefined);
    received.push(
      new Promise((resolve) => {
        const hash = createHash('sha256');
        let bytes = 0;
        let head = '';
        s.on('data', (d: Buffer) => {
          if (head.length < 6) head += d.subarray(0, 6 - head.length).toString('latin1');
          hash.update(d);
          bytes += d.length;
        });
        s.on('end', () => {
          s.end(Buffer.alloc(reply, 0x42));
          resolve({ bytes, sha: hash.digest('hex'), head });
        });
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    server,
    connections,
    received,
    close() {
      for (const c of connections) c.destroy();
      server.close();
    },
  };
}

/** One QEMU-side connection: sends `prefix` + `bytes` random bytes, ends, collects the answer. */
async function qemuChannel(
  path: string,
  prefix: string,
  bytes: number,
): Promise<{ sent: string; back: number; closed: boolean }> {
  const s = connect({ path, allowHalfOpen: true } as never);
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  const hash = createHash('sha256').update(prefix);
  s.write(prefix);
  for (let sent = 0; sent < bytes; sent += MiB) {
    const chunk = randomBytes(Math.min(MiB, bytes - sent));
    hash.update(chunk);
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  s.end();
  let back = 0;
  s.on('data', (d: Buffer) => (back += d.length));
  const closed = await new Promise<boolean>((resolve) => {
    s.once('end', () => resolve(true));
    s.once('close', () => resolve(true));
  });
  s.destroy();
  return { sent: hash.digest('hex'), back, closed };
}

/** What one raw TLS client gets for `request`: the whole answer until the server closes, or the error. */
function ask(
  port: number,
  identity: TlsIdentity,
  request: Buffer | string,
): Promise<{ answer: string; error?: string }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ...identity, checkServerIdentity: () => undefined });
    let answer = '';
    s.on('secureConnect', () => s.write(request));
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    s.on('error', (e: Error) => resolve({ answer, error: e.message }));
    s.on('close', () => resolve({ answer }));
  });
}

function upgrade(id: string, token: string, extra = ''): string {
  return (
    `GET /v1/tunnel/${id} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: vmferry-tunnel\r\n` +
    `x-vmferry-token: ${token}\r\n${extra}\r\n`
  );
}

function refusalText(status: number, statusText: string, code: string, message: string): string {
  const body = `${JSON.stringify({ code, message })}\n`;
  return (
    `HTTP/1.1 ${status} ${statusText}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

async function waitFor<T>(what: string, get: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends `data` to a source QEMU socket until it is all sent or the relay closes the connection. */
async function sendUntilClosed(path: string, data: Buffer): Promise<void> {
  const s = connect({ path, allowHalfOpen: true } as never);
  s.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.resume();
  for (let off = 0; off < data.length && !s.destroyed; off += MiB) {
    if (!s.write(data.subarray(off, off + MiB)))
      await Promise.race([new Promise((r) => s.once('drain', r)), closed]);
  }
  s.end();
  await closed;
}

type Spoil = 'flips one byte inside' | 'gives an oversized length to' | 'ends the stream halfway through';

/**
 * A TCP proxy to `port` that follows the TLS records from the client and spoils the first
 * application_data record of 1000 bytes or more once `after` bytes have passed; what follows
 * a spoiled record passes unchanged (a cut stream: nothing). plaintextBefore: the most data the
 * records before it can carry (TLS 1.3 with no padding: 17 bytes of each are not data).
 */
async function spoilingProxy(
  port: number,
  after: number,
  how: Spoil,
): Promise<{ port: number; spoiled: () => boolean; plaintextBefore: () => number; close: () => void }> {
  let spoiled = false;
  let plaintext = 0;
  const sockets: Socket[] = [];
  const server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port });
    sockets.push(client, upstream);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    upstream.pipe(client);
    upstream.on('close', () => client.destroy());
    let pending: Buffer = Buffer.alloc(0);
    let passed = 0;
    let done = false;
    client.on('data', (d: Buffer) => {
      if (done) {
        if (how !== 'ends the stream halfway through') upstream.write(d);
        return;
      }
      pending = pending.length === 0 ? d : Buffer.concat([pending, d]);
      let off = 0;
      while (pending.length - off >= 5) {
        const length = pending.readUInt16BE(off + 3);
        if (pending.length - off < 5 + length) break;
        const record = pending.subarray(off, off + 5 + length);
        if (passed >= after && record[0] === 23 && length >= 1000) {
          spoiled = done = true;
          upstream.write(pending.subarray(0, off));
          if (how === 'flips one byte inside') {
            record[5 + 500] = (record[5 + 500] ?? 0) ^ 0x01;
          } else if (how === 'gives an oversized length to') {
            record.writeUInt16BE(0x4200, 3);
          } else {
            upstream.end(record.subarray(0, 5 + (length >> 1)));
            return;
          }
          upstream.write(pending.subarray(off));
          return;
        }
        if (record[0] === 23) plaintext += length - 17;
        passed += record.length;
        off += record.length;
      }
      upstream.write(pending.subarray(0, off));
      pending = Buffer.from(pending.subarray(off));
    });
    client.on('end', () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    spoiled: () => spoiled,
    plaintextBefore: () => plaintext,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

const available = nativeRelayAvailability();

/** How a native end is run: its data-path knobs and TLS 1.3 suites. */
interface NativeOptions {
  tuning?: NativeRelayTuning;
  cipherSuites?: string;
}

describe('native relay', { skip: available.available ? false : available.reason, timeout: 300_000 }, () => {
  let dir: string;
  let pki: TestPki;
  let foreign: TestPki;
  let idA: TlsIdentity;
  let idB: TlsIdentity;
  let idC: TlsIdentity;
  const byRole = {} as Record<Exclude<Role, 'host'>, TlsIdentity>;
  let noRole: TlsIdentity;
  let expired: TlsIdentity;
  let revoked: TlsIdentity;
  let foreignA: TlsIdentity;
  let front: TlsFrontend;
  const frontEvents: TransportEvent[] = [];
  const events: WorkerEvent[] = [];
  const token = `tok-${randomBytes(16).toString('hex')}`;
  let n = 0;
  const nextId = (): string => `mig-${++n}`;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmf-native-'));
    pki = await createTestPki('vmferry-test-ca');
    foreign = await createTestPki('someone-else-ca');
    idA = await pki.issue('agent-a');
    idC = await pki.issue('agent-c');
    for (const role of ['operator', 'viewer', 'metrics'] as const)
      byRole[role] = await pki.issueInto(join(pki.dir, 'as', role), 'agent-a', role);
    noRole = await pki.issueWithoutRole('agent-a');
    expired = await pki.issueExpired('agent-a-old', 'host');
    await pki.issue('agent-a-lost');
    revoked = await loadTlsIdentity(issuedIdentityDir(pki.dir, 'agent-a-lost'));
    await pki.revoke('agent-a-lost');
    foreignA = { ...(await foreign.issue('agent-a')), ca: idA.ca };
    await pki.issue('agent-b');
    idB = await loadTlsIdentity(issuedIdentityDir(pki.dir, 'agent-b'));
    assert.ok(idB.crl !== undefined, 'the destination carries the CRL');
    front = await TlsFrontend.start({
      listen: { host: '127.0.0.1', port: 0 },
      localPath: join(dir, 'front.sock'),
      tls: idB,
      internalApiPath: join(dir, 'no-api.sock'),
      workers: 1,
      tunnelRoles: ROUTE_ROLES.tunnel,
      onEvent: (e) => frontEvents.push(e),
    });
  });

  after(async () => {
    await front?.close();
    pki?.dispose();
    foreign?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const frontPort = (): number => front.address?.port ?? 0;

  /** What a test opened, closed after it whatever its assertions said (a failure must not hold the process open). */
  const opened: (() => unknown)[] = [];
  afterEach(async () => {
    for (const close of opened.splice(0).reverse()) {
      try {
        await close();
      } catch {
        // closed already
      }
    }
  });

  /** A destination end of `kind` expecting agent-a, into a fresh sink. */
  async function destination(
    kind: 'native' | 'node',
    id: string,
    maxConnections: number,
    reply = 0,
    native: NativeOptions = {},
  ): Promise<{ port: number; sink: Sink; close: () => Promise<void> }> {
    const sink = await listenSink(join(dir, `${id}-in.sock`), reply);
    opened.push(() => sink.close());
    const registration = {
      migrationId: id,
      token,
      peerCommonName: 'agent-a',
      targetPath: sink.path,
      maxConnections,
    };
    if (kind === 'node') {
      await front.acceptTunnel(registration);
      opened.push(() => front.closeTunnel(id));
      return { port: frontPort(), sink, close: async () => void (await front.closeTunnel(id)) };
    }
    const relay = await NativeRelay.listenDestination({
      ...native,
      listen: { host: '127.0.0.1', port: 0 },
      tls: idB,
      registration,
      tunnelRoles: ROUTE_ROLES.tunnel,
      onEvent: (e) => events.push(e),
    });
    opened.push(() => relay.close());
    return { port: relay.ready.port ?? 0, sink, close: async () => void (await relay.close()) };
  }

  /** A source end of `kind` for agent-a; its unix socket path. */
  async function source(
    kind: 'native' | 'node',
    id: string,
    port: number,
    twist: {
      token?: string;
      expectedPeerCommonName?: string;
      tls?: TlsIdentity;
      native?: NativeOptions;
    } = {},
  ): Promise<{ path: string; close: () => Promise<void> }> {
    const listenPath = join(dir, `${id}-out.sock`);
    const options = {
      migrationId: id,
      token: twist.token ?? token,
      listenPath,
      remote: { host: '127.0.0.1', port },
      expectedPeerCommonName: twist.expectedPeerCommonName ?? 'agent-b',
    };
    if (kind === 'node') {
      const src = await TlsFrontend.start({
        localPath: join(dir, `${id}-a.sock`),
        tls: twist.tls ?? idA,
        internalApiPath: join(dir, 'no-api.sock'),
        workers: 2,
        tunnelRoles: ROUTE_ROLES.tunnel,
      });
      opened.push(() => src.close());
      const tunnel = await src.openSourceTunnel(options);
      return { path: listenPath, close: async () => void (await tunnel.close(), await src.close()) };
    }
    const relay = await NativeRelay.openSource({
      ...twist.native,
      ...options,
      tls: twist.tls ?? idA,
      onEvent: (e) => events.push(e),
    });
    return { path: listenPath, close: async () => void (await relay.close()) };
  }

  /**
   * 4 channels of `bytes` from the source QEMU's stand-in, each answered with `reply` bytes by the
   * destination's: byte for byte both ways, the main channel first. The native ends' closing reports.
   */
  async function relayFourChannels(
    src: 'native' | 'node',
    dst: 'native' | 'node',
    bytes: number,
    reply: number,
    native: NativeOptions = {},
  ): Promise<Extract<WorkerEvent, { type: 'tunnel-connection-closed' }>[]> {
    const id = nextId();
    const before = events.length;
    const d = await destination(dst, id, 4, reply, native);
    const s = await source(src, id, d.port, { native });
    // QEMU's main channel connects first; the others follow at once.
    const main = qemuChannel(s.path, 'chan-0', bytes);
    await waitFor('the main channel at the destination', () =>
      d.sink.connections.length === 1 ? true : undefined,
    );
    const rest = [1, 2, 3].map((i) => qemuChannel(s.path, `chan-${i}`, bytes));
    const sent = await Promise.all([main, ...rest]);
    const got = await Promise.all(d.sink.received);
    assert.equal(got[0]?.head, 'chan-0');
    assert.deepEqual(got.map((g) => g.sha).sort(), sent.map((x) => x.sent).sort());
    assert.ok(got.every((g) => g.bytes === bytes + 6));
    assert.deepEqual(
      sent.map((x) => x.back),
      [reply, reply, reply, reply],
    );
    const nativeEnds = (src === 'native' ? 1 : 0) + (dst === 'native' ? 1 : 0);
    const closed = await waitFor('every native connection closed', () => {
      const all = events
        .slice(before)
        .filter(
          (e): e is Extract<WorkerEvent, { type: 'tunnel-connection-closed' }> =>
            e.type === 'tunnel-connection-closed' && e.migrationId === id,
        );
      return all.length === 4 * nativeEnds ? all : undefined;
    });
    await s.close();
    await d.close();
    assert.equal(existsSync(s.path), false, 'the source socket is removed');
    d.sink.close();
    return closed;
  }

  for (const [src, dst] of [
    ['native', 'native'],
    ['native', 'node'],
    ['node', 'native'],
  ] as const) {
    it(`relays 4 channels byte for byte, answers too, main channel first: ${src} source, ${dst} destination`, async () => {
      const closed = await relayFourChannels(src, dst, 32 * MiB, 3 * MiB);
      for (const c of closed) {
        assert.equal(c.error, undefined, `${c.role}: no error`);
        assert.equal(c.sendPath, 'sealed', `${c.role}: the native relay seals its records by default`);
        assert.equal(c.receivePath, 'opened', `${c.role}: and opens the peer's records by default`);
      }
    });
  }

  it('relays byte for byte through SSL_write and SSL_read when the sealed send path is off', async () => {
    const closed = await relayFourChannels('native', 'native', 8 * MiB, MiB, { tuning: { sealed: false } });
    assert.deepEqual(
      closed.map((c) => [c.sendPath, c.keyUpdatesSent, c.receivePath, c.error]),
      Array(8).fill(['ssl-write', 0, 'ssl-read', undefined]),
    );
  });

  it('relays byte for byte through SSL_read when only the open receive path is off', async () => {
    const closed = await relayFourChannels('native', 'native', 8 * MiB, MiB, { tuning: { opened: false } });
    assert.deepEqual(
      closed.map((c) => [c.sendPath, c.receivePath, c.keyUpdatesReceived, c.error]),
      Array(8).fill(['sealed', 'ssl-read', 0, undefined]),
    );
  });

  // Every 8 records a KeyUpdate that asks the peer to update too: the native end's own KeyUpdates
  // must be accepted by OpenSSL (native) and by Node's TLS (TypeScript relay), and the KeyUpdates a
  // peer sends in answer must not make OpenSSL write on the direction the native relay seals.
  for (const [src, dst, suite] of [
    ['native', 'native', 'TLS_CHACHA20_POLY1305_SHA256'],
    ['native', 'node', undefined],
    ['node', 'native', 'TLS_AES_128_GCM_SHA256'],
  ] as const) {
    it(`updates its sending key every 8 records, peers accept it: ${src} source, ${dst} destination, ${suite ?? "the front door's suite"}`, async () => {
      const bytes = 4 * MiB;
      const reply = MiB;
      const closed = await relayFourChannels(src, dst, bytes, reply, {
        tuning: { keyUpdateRecords: 8, keyUpdateRequested: true },
        ...(suite !== undefined ? { cipherSuites: suite } : {}),
      });
      for (const c of closed) {
        assert.equal(c.error, undefined, `${c.role}: no error`);
        assert.equal(c.sendPath, 'sealed', `${c.role}: sealed`);
        assert.equal(
          c.receivePath,
          'opened',
          `${c.role}: opened, so its own code applied the peer's KeyUpdates`,
        );
        // At most 16 KiB a record, so at least this many records, and a KeyUpdate after each 8 but the last.
        const records = Math.ceil((c.role === 'source' ? bytes : reply) / 16384);
        assert.ok(
          (c.keyUpdatesSent ?? 0) >= Math.floor(records / 8) - 1,
          `${c.role}: ${c.keyUpdatesSent} KeyUpdates for ${records} records or more`,
        );
        // The peer's KeyUpdates, applied by the open path: a native peer's every 8 records, or Node's
        // answers to ours (a Node source has sent everything before the destination's requests come).
        if (src === 'native') {
          const peerRecords = Math.ceil(
            (c.role === 'source' ? (dst === 'native' ? reply : bytes) : bytes) / 16384,
          );
          assert.ok(
            (c.keyUpdatesReceived ?? 0) >= Math.floor(peerRecords / 8) - 1,
            `${c.role}: ${c.keyUpdatesReceived} KeyUpdates applied, ${peerRecords} records or more`,
          );
        }
      }
    });
  }

  // A TCP proxy between a native source and a native destination spoils one record after 4 MiB:
  // the destination ends the connection saying why, and its QEMU gets an exact prefix of the
  // stream that holds nothing of the spoiled record or what follows it.
  for (const [how, error] of [
    ['flips one byte inside', /^bad record MAC: /],
    ['gives an oversized length to', /^record overflow: a TLS record of 16896 bytes$/],
    ['ends the stream halfway through', /^the tunnel connection ended inside a TLS record$/],
  ] as const) {
    it(`the open receive path: a proxy ${how} a record, QEMU gets only what came before it`, async () => {
      const id = nextId();
      const before = events.length;
      const d = await destination('native', id, 1);
      const proxy = await spoilingProxy(d.port, 4 * MiB, how);
      opened.push(() => proxy.close());
      const s = await source('native', id, proxy.port);
      const data = randomBytes(16 * MiB);
      await sendUntilClosed(s.path, data);
      const [got] = await Promise.all(d.sink.received);
      assert.ok(proxy.spoiled(), 'the proxy spoiled a record');
      assert.ok(
        got !== undefined && got.bytes > 0 && got.bytes < data.length,
        `${got?.bytes} bytes reached QEMU`,
      );
      assert.equal(
        got.sha,
        createHash('sha256').update(data.subarray(0, got.bytes)).digest('hex'),
        'a prefix',
      );
      // The records before the spoiled one carried at most this much data (the handshake's and the
      // request's records count too): a byte of the spoiled 16 KiB record would go past it.
      assert.ok(got.bytes <= proxy.plaintextBefore(), `${got.bytes} <= ${proxy.plaintextBefore()}`);
      const closed = await waitFor('the destination closing', () =>
        events
          .slice(before)
          .find(
            (e) => e.type === 'tunnel-connection-closed' && e.migrationId === id && e.role === 'destination',
          ),
      );
      assert.ok(closed.type === 'tunnel-connection-closed');
      assert.equal(closed.receivePath, 'opened');
      assert.match(closed.error ?? '', error);
      await s.close();
      await d.close();
      d.sink.close();
    });
  }

  it('refuses what the front door refuses, with the same answer, relaying nothing', async () => {
    const id = nextId();
    const d = await destination('native', id, 4);
    // The front door holds the same registration, so both answer the same requests.
    const sinkFront = await listenSink(join(dir, `${id}-front.sock`));
    opened.push(() => sinkFront.close());
    await front.acceptTunnel({
      migrationId: id,
      token,
      peerCommonName: 'agent-a',
      targetPath: sinkFront.path,
      maxConnections: 4,
    });
    const forbidden = refusalText(403, 'Forbidden', 'VMF_ERR_AUTH', 'tunnel refused');
    const cases: { what: string; identity: TlsIdentity; request: string; answer: string; reason: string }[] =
      [
        {
          what: 'wrong token',
          identity: idA,
          request: upgrade(id, 'tok-wrong-wrong-wrong-wrong'),
          answer: forbidden,
          reason: `wrong tunnel token for migration ${id}`,
        },
        {
          what: 'the token twice',
          identity: idA,
          request: upgrade(id, token, `x-vmferry-token: ${token}\r\n`),
          answer: forbidden,
          reason: `wrong tunnel token for migration ${id}`,
        },
        {
          what: 'unknown migration',
          identity: idA,
          request: upgrade('mig-never-prepared', token),
          answer: forbidden,
          reason: 'migration mig-never-prepared has no prepared tunnel',
        },
        {
          what: 'wrong CN',
          identity: idC,
          request: upgrade(id, token),
          answer: forbidden,
          reason: `peer "agent-c" is not "agent-a", the peer of migration ${id}`,
        },
        ...(['operator', 'viewer', 'metrics'] as const).map((role) => ({
          what: `a ${role} certificate`,
          identity: byRole[role],
          request: upgrade(id, token),
          answer: forbidden,
          reason: `${role} "agent-a" may not open tunnels (host only)`,
        })),
        {
          what: 'a certificate without a role',
          identity: noRole,
          request: upgrade(id, token),
          answer: forbidden,
          reason: 'a certificate without a role "agent-a" may not open tunnels (host only)',
        },
        {
          what: 'another upgrade',
          identity: idA,
          request: upgrade(id, token).replace('vmferry-tunnel', 'websocket'),
          answer: refusalText(400, 'Bad Request', 'VMF_ERR_USAGE', 'unsupported upgrade "websocket"'),
          reason: 'unsupported upgrade "websocket"',
        },
        {
          what: 'another path',
          identity: idA,
          request: upgrade(id, token).replace(`/v1/tunnel/${id}`, '/v1/tunnel/../../vms'),
          answer: refusalText(
            404,
            'Not Found',
            'VMF_ERR_NOT_FOUND',
            'no tunnel endpoint "/v1/tunnel/../../vms"',
          ),
          reason: 'no tunnel endpoint "/v1/tunnel/../../vms"',
        },
      ];
    for (const c of cases) {
      const before = events.length;
      const native = await ask(d.port, c.identity, c.request);
      const node = await ask(frontPort(), c.identity, c.request);
      assert.equal(native.answer, c.answer, c.what);
      assert.equal(node.answer, c.answer, `${c.what} (front door)`);
      const refused = await waitFor(`${c.what}: the refusal event`, () =>
        events.slice(before).find((e) => e.type === 'tunnel-refused'),
      );
      assert.deepEqual(
        { ...refused, remoteAddress: '' },
        {
          type: 'tunnel-refused',
          migrationId: undefined,
          status: Number(c.answer.slice(9, 12)),
          reason: c.reason,
          peerCommonName: c.what === 'wrong CN' ? 'agent-c' : 'agent-a',
          remoteAddress: '',
        },
        c.what,
      );
      assert.match(refused.type === 'tunnel-refused' ? refused.remoteAddress : '', /^127\.0\.0\.1:\d+$/);
    }
    // Bytes inside TLS that are not HTTP, and a head past 16 KiB: 400, like the front door's.
    const junk = Buffer.concat([Buffer.from('BREW /v1 HTCPCP/1.0\r\n\x00\x01\r\n\r\n')]);
    for (const [what, request, message] of [
      ['junk', junk, 'not an HTTP/1.1 request: malformed'],
      [
        'a huge head',
        `GET /v1/tunnel/${id} HTTP/1.1\r\nx: ${'a'.repeat(20_000)}\r\n\r\n`,
        'not an HTTP/1.1 request: headers too large',
      ],
    ] as const) {
      const native = await ask(d.port, idA, request);
      const node = await ask(frontPort(), idA, request);
      const answer = refusalText(400, 'Bad Request', 'VMF_ERR_USAGE', message);
      assert.equal(native.answer, answer, what);
      assert.equal(node.answer, answer, `${what} (front door)`);
    }
    // Certificates TLS itself refuses: no answer, and a handshake failure saying why.
    for (const [what, identity, why] of [
      // Node's front door names this UNABLE_TO_VERIFY_LEAF_SIGNATURE; the system's OpenSSL, the missing issuer.
      ['foreign CA', foreignA, /client certificate: UNABLE_TO_GET_ISSUER_CERT_LOCALLY/],
      ['expired', expired, /client certificate: CERT_HAS_EXPIRED/],
      ['revoked', revoked, /client certificate: CERT_REVOKED/],
    ] as const) {
      const before = events.length;
      const got = await ask(d.port, identity, upgrade(id, token));
      assert.equal(got.answer, '', what);
      const failed = await waitFor(`${what}: the handshake failure`, () =>
        events.slice(before).find((e) => e.type === 'tls-handshake-failed'),
      );
      assert.match(failed.type === 'tls-handshake-failed' ? failed.reason : '', why, what);
    }
    // Junk bytes before TLS: a handshake failure, nothing else.
    const before = events.length;
    await new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: d.port }, () => s.end(upgrade(id, token)));
      s.on('data', () => undefined);
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    const failed = await waitFor('the plain-text handshake failure', () =>
      events.slice(before).find((e) => e.type === 'tls-handshake-failed'),
    );
    assert.match(
      failed.type === 'tls-handshake-failed' ? failed.reason : '',
      /wrong version number|http request/i,
    );
    assert.equal(d.sink.connections.length, 0, 'nothing reached the destination QEMU');
    assert.equal(sinkFront.connections.length, 0, 'nothing reached it through the front door either');
    await d.close();
    await front.closeTunnel(id);
    d.sink.close();
    sinkFront.close();
  });

  it('refuses connections beyond the budget (429) and to a QEMU that does not listen (502)', async () => {
    const id = nextId();
    const d = await destination('native', id, 1);
    const held = tlsConnect({
      host: '127.0.0.1',
      port: d.port,
      ...idA,
      checkServerIdentity: () => undefined,
    });
    held.on('error', () => undefined);
    opened.push(() => held.destroy());
    const first = await new Promise<string>((resolve) => {
      held.on('secureConnect', () => held.write(upgrade(id, token)));
      held.once('data', (c: Buffer) => resolve(c.toString('latin1')));
    });
    assert.match(
      first,
      /^HTTP\/1\.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: vmferry-tunnel\r\n\r\n/,
    );
    const second = await ask(d.port, idA, upgrade(id, token));
    assert.equal(
      second.answer,
      refusalText(
        429,
        'Too Many Requests',
        'VMF_ERR_LIMIT',
        `migration ${id} already has all its tunnel connections`,
      ),
    );
    assert.equal(d.sink.connections.length, 1);
    held.destroy();
    await d.close();
    d.sink.close();
    const id2 = nextId();
    const gone = await destination('native', id2, 2);
    gone.sink.close();
    const refused = await ask(gone.port, idA, upgrade(id2, token));
    assert.match(
      refused.answer,
      /^HTTP\/1\.1 502 Bad Gateway\r\n[^]*\{"code":"VMF_ERR_PEER","message":"cannot connect to the destination QEMU: connect (ENOENT|ECONNREFUSED) [^"]+"\}\n$/,
    );
    await gone.close();
  });

  it('a native source refuses a destination that is not the expected agent, and reports a refusal with its answer', async () => {
    const id = nextId();
    const d = await destination('node', id, 4);
    for (const [twist, reason] of [
      [{ expectedPeerCommonName: 'agent-z' }, 'the remote agent is "agent-b", not "agent-z"'],
      [
        { token: 'tok-wrong-wrong-wrong-wrong' },
        `127.0.0.1:${d.port} refused the tunnel: 403 {"code":"VMF_ERR_AUTH","message":"tunnel refused"}`,
      ],
    ] as const) {
      const before = events.length;
      const s = await source('native', id, d.port, twist);
      const channel = await qemuChannel(s.path, 'QEVM', 0);
      assert.equal(channel.closed, true, 'the QEMU-side connection is closed');
      const failed = await waitFor('the failure report', () =>
        events.slice(before).find((e) => e.type === 'source-connect-failed'),
      );
      assert.deepEqual(failed, { type: 'source-connect-failed', migrationId: id, index: 0, reason });
      await s.close();
    }
    assert.equal(d.sink.connections.length, 0);
    await d.close();
    d.sink.close();
  });
});
