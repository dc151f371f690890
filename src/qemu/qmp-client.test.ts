import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QmpCommandError, QmpConnectionError, QmpTimeoutError } from '../errors.js';
import { QmpClient, type QmpEvent } from './qmp-client.js';

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n';

/** A scripted peer standing in for QEMU's monitor: it answers the handshake, then hands each line to `onLine`. */
class FakeMonitor {
  readonly path: string;
  private readonly server: Server;
  socket: Socket | undefined;
  onLine: (msg: { execute: string; id: string; arguments?: unknown }, socket: Socket) => void = () =>
    undefined;

  constructor(dir: string, name: string, greeting = GREETING) {
    this.path = join(dir, `${name}.sock`);
    this.server = createServer((socket) => {
      this.socket = socket;
      socket.write(greeting);
      let buf = '';
      socket.on('data', (chunk) => {
        buf += chunk.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buf.slice(0, i)) as { execute: string; id: string };
          buf = buf.slice(i + 1);
          if (msg.execute === 'qmp_capabilities') socket.write(`{"return": {}, "id": "${msg.id}"}\r\n`);
          else this.onLine(msg, socket);
        }
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  close(): void {
    this.socket?.destroy();
    this.server.close();
  }
}

describe('QmpClient framing and errors', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmf-qmp-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function setup(name: string): Promise<{ mon: FakeMonitor; client: QmpClient }> {
    const mon = new FakeMonitor(dir, name);
    await mon.listen();
    const client = await QmpClient.connect(mon.path, { timeoutMs: 2000 });
    return { mon, client };
  }

  it('reads the greeting and runs a command', async () => {
    const { mon, client } = await setup('basic');
    mon.onLine = (msg, s) =>
      s.write(`{"return": {"status": "running", "running": true}, "id": "${msg.id}"}\r\n`);
    assert.equal(client.greeting.version.qemu.major, 7);
    const status = await client.execute<{ status: string }>('query-status');
    assert.equal(status.status, 'running');
    client.close();
    mon.close();
  });

  it('reassembles a reply split across many chunks, byte by byte', async () => {
    const { mon, client } = await setup('partial');
    mon.onLine = (msg, s) => {
      const reply = `{"return": {"status": "paused", "running": false}, "id": "${msg.id}"}\r\n`;
      let i = 0;
      const step = (): void => {
        if (i >= reply.length) return;
        s.write(reply[i++] ?? '');
        setImmediate(step);
      };
      step();
    };
    const status = await client.execute<{ status: string }>('query-status');
    assert.equal(status.status, 'paused');
    client.close();
    mon.close();
  });

  it('handles several messages in one chunk, events between a command and its reply, and out-of-order replies', async () => {
    const { mon, client } = await setup('multi');
    const ids: string[] = [];
    mon.onLine = (msg, s) => {
      ids.push(msg.id);
      if (ids.length < 2) return;
      const [a, b] = ids;
      s.write(
        '{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}\r\n' +
          `{"return": "second", "id": "${b}"}\r\n` +
          '{"event": "MIGRATION", "data": {"status": "active"}, "timestamp": {"seconds": 1, "microseconds": 3}}\r\n' +
          `{"return": "first", "id": "${a}"}\r\n`,
      );
    };
    const events: QmpEvent[] = [];
    client.on('*', (e) => events.push(e));
    const migration: QmpEvent[] = [];
    client.on('MIGRATION', (e) => migration.push(e));
    const [first, second] = await Promise.all([client.execute('one'), client.execute('two')]);
    assert.equal(first, 'first');
    assert.equal(second, 'second');
    assert.deepEqual(
      events.map((e) => e.event),
      ['STOP', 'MIGRATION'],
    );
    assert.deepEqual(migration[0]?.data, { status: 'active' });
    client.close();
    mon.close();
  });

  it('turns an error reply into a QmpCommandError with QEMU class and text', async () => {
    const { mon, client } = await setup('error');
    mon.onLine = (msg, s) =>
      s.write(
        `{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": "${msg.id}"}\r\n`,
      );
    await assert.rejects(client.execute('nope'), (err: unknown) => {
      assert.ok(err instanceof QmpCommandError);
      assert.equal(err.qemuClass, 'CommandNotFound');
      assert.equal(err.qemuDesc, 'The command nope has not been found');
      assert.equal(err.command, 'nope');
      return true;
    });
    client.close();
    mon.close();
  });

  it('rejects every pending command when the monitor closes mid-command', async () => {
    const { mon, client } = await setup('close');
    let seen = 0;
    mon.onLine = (_msg, s) => {
      seen += 1;
      if (seen === 2) s.destroy();
    };
    const closed = new Promise<Error>((resolve) => client.onClose(resolve));
    const results = await Promise.allSettled([client.execute('a'), client.execute('b')]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof QmpConnectionError);
      assert.match((r.reason as Error).message, /got no reply/);
    }
    assert.ok((await closed) instanceof QmpConnectionError);
    assert.equal(client.connected, false);
    await assert.rejects(
      client.execute('c'),
      (err: unknown) =>
        err instanceof QmpConnectionError &&
        err.message === "cannot run 'c': QEMU monitor closed the connection",
    );
    mon.close();
  });

  it('times out a command QEMU never answers, and the client stays usable', async () => {
    const { mon, client } = await setup('timeout');
    mon.onLine = (msg, s) => {
      if (msg.execute === 'fast') s.write(`{"return": 1, "id": "${msg.id}"}\r\n`);
    };
    await assert.rejects(client.execute('slow', undefined, { timeoutMs: 50 }), QmpTimeoutError);
    assert.equal(await client.execute('fast'), 1);
    client.close();
    mon.close();
  });

  it('waitForEvent resolves on a matching event and rejects when the monitor dies', async () => {
    const { mon, client } = await setup('wait');
    const completed = client.waitForEvent('MIGRATION', (e) => e.data.status === 'completed', 2000);
    mon.socket?.write('{"event": "MIGRATION", "data": {"status": "active"}}\r\n');
    mon.socket?.write('{"event": "MIGRATION", "data": {"status": "completed"}}\r\n');
    assert.equal((await completed).data.status, 'completed');
    const never = client.waitForEvent('SHUTDOWN', undefined, 2000);
    mon.socket?.destroy();
    await assert.rejects(never, QmpConnectionError);
    mon.close();
  });

  it('refuses a socket that is not a QMP monitor, and a missing socket', async () => {
    const mon = new FakeMonitor(dir, 'notqmp', 'hello, I am a shell\n');
    await mon.listen();
    await assert.rejects(QmpClient.connect(mon.path, { timeoutMs: 1000 }), /not a QMP monitor/);
    mon.close();
    await assert.rejects(
      QmpClient.connect(join(dir, 'missing.sock'), { timeoutMs: 1000 }),
      (err: unknown) => err instanceof QmpConnectionError && /missing\.sock/.test(err.message),
    );
  });

  it('closes the connection on a line that is not JSON, failing pending commands', async () => {
    const { mon, client } = await setup('garbage');
    mon.onLine = (_msg, s) => s.write('this is not json\r\n');
    await assert.rejects(client.execute('x'), /not JSON/);
    assert.equal(client.connected, false);
    mon.close();
  });
});
