import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { QmpCommandError, QmpConnectionError } from '../errors.js';
import { MAX_QMP_LINE_BYTES, QmpClient, type QmpEvent } from './qmp-client.js';
import { prng } from '../prng.js';

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n';

/** The monitor's end of the stream, driven by the test: what it pushes QmpClient reads; what the client writes it keeps. */
class ScriptedMonitor extends Duplex {
  readonly commands: { execute: string; id: string }[] = [];
  private partial = '';

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.partial += chunk.toString();
    let i: number;
    while ((i = this.partial.indexOf('\n')) >= 0) {
      const command = JSON.parse(this.partial.slice(0, i)) as { execute: string; id: string };
      this.partial = this.partial.slice(i + 1);
      this.commands.push(command);
      if (command.execute === 'qmp_capabilities') this.push(`{"return": {}, "id": "${command.id}"}\n`);
    }
    done();
  }

  /** Sends bytes in pieces of random sizes, splitting characters anywhere. */
  send(bytes: Buffer, rand: () => number): void {
    let at = 0;
    while (at < bytes.length) {
      const n = 1 + Math.floor(rand() * 64);
      this.push(bytes.subarray(at, at + n));
      at += n;
    }
  }
}

async function connected(): Promise<{ monitor: ScriptedMonitor; client: QmpClient }> {
  const monitor = new ScriptedMonitor();
  monitor.push(GREETING);
  const client = await QmpClient.connect('scripted', { socketFactory: () => monitor, timeoutMs: 2000 });
  return { monitor, client };
}

/** Text with what breaks naive readers: multi-byte characters, astral ones, escapes, separators. */
function nastyText(rand: () => number): string {
  const pieces = ['é', '日本', '🚀', '\u2028', '\\', '"', '\n', 'x', '{', '}', '\u0000', 'ß', '𝕏'];
  let s = '';
  const n = Math.floor(rand() * 12);
  for (let i = 0; i < n; i++) s += pieces[Math.floor(rand() * pieces.length)] ?? '';
  return s;
}

function randomValue(rand: () => number, depth = 0): unknown {
  const kind = Math.floor(rand() * (depth > 2 ? 5 : 7));
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rand() < 0.5;
    case 2:
      return Math.floor(rand() * 2 ** 53) * (rand() < 0.5 ? -1 : 1);
    case 3:
      return nastyText(rand);
    case 4:
      return rand() * 1e308;
    case 5:
      return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: Math.floor(rand() * 4) }, (_, i) => [
          `k${i}${nastyText(rand)}`,
          randomValue(rand, depth + 1),
        ]),
      );
  }
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('QMP reader under hostile and broken monitors (seeded fuzz)', () => {
  it('delivers every event intact however its bytes are split, multi-byte characters included', async () => {
    for (let seed = 1; seed <= 60; seed++) {
      const rand = prng(seed);
      const { monitor, client } = await connected();
      const seen: QmpEvent[] = [];
      client.on('*', (e) => seen.push(e));
      const sent = Array.from({ length: 1 + Math.floor(rand() * 20) }, (_, i) => ({
        event: `EV_${i}${nastyText(rand)}`,
        data: { n: i, text: nastyText(rand), any: randomValue(rand) },
        timestamp: { seconds: i, microseconds: 7 },
      }));
      monitor.send(Buffer.from(sent.map((e) => `${JSON.stringify(e)}\r\n`).join('')), rand);
      await flush();
      assert.deepEqual(
        seen.map((e) => [e.event, e.data]),
        sent.map((e) => [e.event, e.data]),
        `seed ${seed}`,
      );
      assert.equal(client.connected, true);
      client.close();
    }
  });

  it('hands handlers an object whatever type data and timestamp have, and ignores replies nobody waits for', async () => {
    for (let seed = 100; seed < 160; seed++) {
      const rand = prng(seed);
      const { monitor, client } = await connected();
      const seen: QmpEvent[] = [];
      client.on('*', (e) => seen.push(e));
      const lines = Array.from({ length: 10 }, (_, i) =>
        rand() < 0.5
          ? JSON.stringify({ event: `E${i}`, data: randomValue(rand), timestamp: randomValue(rand) })
          : JSON.stringify({
              id: rand() < 0.5 ? `vmf-${99 + i}` : randomValue(rand),
              return: randomValue(rand),
            }),
      );
      monitor.send(Buffer.from(`${lines.join('\n')}\n`), rand);
      await flush();
      for (const e of seen) {
        assert.equal(typeof e.data, 'object', `seed ${seed}`);
        assert.ok(e.data !== null && !Array.isArray(e.data), `seed ${seed}`);
        assert.ok(
          e.timestamp === undefined || (typeof e.timestamp === 'object' && !Array.isArray(e.timestamp)),
        );
      }
      assert.equal(
        client.connected,
        true,
        `seed ${seed}: well-formed JSON of any shape keeps the connection`,
      );
      client.close();
    }
  });

  it('settles every command when the monitor sends garbage: a reply, a QEMU error, or a connection error', async () => {
    for (let seed = 200; seed < 300; seed++) {
      const rand = prng(seed);
      const { monitor, client } = await connected();
      const calls = Array.from({ length: 1 + Math.floor(rand() * 5) }, (_, i) =>
        client.execute(`cmd-${i}`, undefined, { timeoutMs: 0 }).then(
          (value) => ({ ok: true as const, value }),
          (err: unknown) => ({ ok: false as const, err }),
        ),
      );
      await flush();
      const ids = monitor.commands.filter((c) => c.execute.startsWith('cmd-')).map((c) => c.id);
      const answered = ids.filter(() => rand() < 0.5);
      const replies = answered.map((id) =>
        rand() < 0.5
          ? JSON.stringify({ return: randomValue(rand), id })
          : JSON.stringify({ error: { class: 'GenericError', desc: nastyText(rand) }, id }),
      );
      const garbage = Buffer.from(
        Array.from({ length: 1 + Math.floor(rand() * 300) }, () => Math.floor(rand() * 256)),
      );
      monitor.send(Buffer.concat([Buffer.from(`${replies.join('\n')}\n`), garbage, Buffer.from('\n')]), rand);
      await flush();
      // Whatever the garbage did, nothing may hang: the monitor closing settles the rest.
      monitor.destroy();
      const outcomes = await Promise.all(calls);
      for (const o of outcomes) {
        if (o.ok) continue;
        assert.ok(
          o.err instanceof QmpCommandError || o.err instanceof QmpConnectionError,
          `seed ${seed}: ${String(o.err)}`,
        );
      }
      assert.equal(outcomes.filter((o) => o.ok).length <= answered.length, true);
      assert.equal(client.connected, false);
    }
  });

  it('cuts off a monitor that sends a line without end', async () => {
    const { monitor, client } = await connected();
    const refused = assert.rejects(
      client.execute('query-status', undefined, { timeoutMs: 0 }),
      (err: unknown) =>
        err instanceof QmpConnectionError &&
        err.message ===
          `'query-status' got no reply: QEMU monitor sent a line longer than ${MAX_QMP_LINE_BYTES} bytes`,
    );
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    for (let sent = 0; sent <= MAX_QMP_LINE_BYTES; sent += chunk.length) monitor.push(chunk);
    await refused;
    assert.equal(client.connected, false);
  });

  it('refuses a greeting that never ends or is not QMP, naming the socket', async () => {
    const endless = new ScriptedMonitor();
    const chunk = Buffer.alloc(1024 * 1024, 0x7b);
    for (let sent = 0; sent <= MAX_QMP_LINE_BYTES; sent += chunk.length) endless.push(chunk);
    await assert.rejects(
      QmpClient.connect('endless', { socketFactory: () => endless, timeoutMs: 2000 }),
      (err: unknown) =>
        err instanceof QmpConnectionError &&
        err.message === 'endless is not a QMP monitor (no greeting line)',
    );
    const other = new ScriptedMonitor();
    other.push('{"hello": "world"}\n');
    await assert.rejects(
      QmpClient.connect('other', { socketFactory: () => other, timeoutMs: 2000 }),
      (err: unknown) =>
        err instanceof QmpConnectionError && err.message === 'other is not a QMP monitor (no QMP greeting)',
    );
  });
});
