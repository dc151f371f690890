import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { relay } from './relay.js';

/** A connected pair of unix sockets: `outer` stands for QEMU or the peer, `inner` is what the relay holds. */
async function socketPair(server: Server, path: string): Promise<{ outer: Socket; inner: Socket }> {
  const inner = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const outer = connect(path);
  await new Promise<void>((resolve) => outer.once('connect', resolve));
  return { outer, inner: await inner };
}

function collect(s: Socket): Promise<{ bytes: number; sha: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve) => {
    s.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    s.on('end', () => resolve({ bytes, sha: h.digest('hex') }));
  });
}

describe('relay', () => {
  let dir: string;
  let server: Server;
  let path: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmf-relay-'));
    path = join(dir, 's.sock');
    server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve) => server.listen(path, resolve));
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const options = { lingerMs: 2000, batchWrites: { aToB: true, bToA: false } };

  it('carries both directions byte for byte and counts them', async () => {
    const x = await socketPair(server, path);
    const y = await socketPair(server, path);
    const r = relay(x.inner, y.inner, options);
    const aData = randomBytes(3 * 1024 * 1024 + 17);
    const bData = randomBytes(1024 * 1024 + 5);
    const atY = collect(y.outer);
    const atX = collect(x.outer);
    x.outer.end(aData);
    y.outer.end(bData);
    const [gotY, gotX] = await Promise.all([atY, atX]);
    assert.equal(gotY.sha, createHash('sha256').update(aData).digest('hex'));
    assert.equal(gotX.sha, createHash('sha256').update(bData).digest('hex'));
    const result = await r.closed;
    assert.equal(result.aToB, aData.length);
    assert.equal(result.bToA, bData.length);
    assert.equal(result.error, undefined);
  });

  it('passes an end on, then closes when both sides have ended', async () => {
    const x = await socketPair(server, path);
    const y = await socketPair(server, path);
    const r = relay(x.inner, y.inner, options);
    const yEnded = new Promise((resolve) => y.outer.once('end', resolve));
    y.outer.resume();
    x.outer.end('last words');
    await yEnded;
    y.outer.end();
    const result = await r.closed;
    assert.equal(result.aToB, 'last words'.length);
  });

  it('destroys the other side when one side fails', async () => {
    const x = await socketPair(server, path);
    const y = await socketPair(server, path);
    const r = relay(x.inner, y.inner, options);
    const yClosed = new Promise((resolve) => y.outer.once('close', resolve));
    y.outer.on('error', () => undefined);
    y.outer.resume();
    x.inner.destroy(new Error('boom'));
    await yClosed;
    const result = await r.closed;
    assert.equal(result.error?.message, 'boom');
  });

  it('destroys a half-closed pair after the linger time', async () => {
    const x = await socketPair(server, path);
    const y = await socketPair(server, path);
    y.outer.allowHalfOpen = true;
    const r = relay(x.inner, y.inner, { ...options, lingerMs: 50 });
    y.outer.resume();
    x.outer.end();
    // y never ends its side: the relay must not wait for it forever.
    const started = Date.now();
    await r.closed;
    assert.ok(Date.now() - started < 1500);
  });

  it('stops reading while the other side does not take data, and loses nothing once it does', async () => {
    const x = await socketPair(server, path);
    const y = await socketPair(server, path);
    const r = relay(x.inner, y.inner, { ...options, batchWrites: { aToB: false, bToA: false } });
    y.outer.pause();
    const block = Buffer.alloc(1024 * 1024, 7);
    let written = 0;
    do written += block.length;
    while (x.outer.write(block));
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Everything in flight sits in socket buffers and at most a high-water mark in the relay, not in memory without bound.
    assert.ok(r.counters.aToB < 16 * 1024 * 1024, `relayed ${r.counters.aToB}`);
    assert.ok(r.counters.aToB < written, 'the relay holds back what the reader does not take');
    assert.ok(x.outer.writableLength > 0, 'the writer is held back');
    const received = collect(y.outer);
    y.outer.resume();
    x.outer.end();
    assert.equal((await received).bytes, written, 'every byte arrives once the reader reads');
    await r.closed;
    assert.equal(r.counters.aToB, written);
  });
});
