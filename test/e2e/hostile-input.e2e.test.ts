import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { API, Agent, AgentClient, pathOf } from '../../src/agent/index.js';
import { ERROR_CODES, isErrorCode } from '../../src/errors.js';
import { createTestPki, type TestPki, type TlsIdentity } from '../../src/pki/index.js';
import { TOKEN_HEADER, TUNNEL_PROTOCOL } from '../../src/transport/index.js';
import { prng } from '../../src/prng.js';
import { startLoopbackAgent } from './helpers.js';

const pick = <T>(rand: () => number, items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;

/** Names and paths that try to leave where they belong, and text that breaks naive code. */
const NASTY = [
  '../../etc/passwd',
  '..',
  '.',
  '%2e%2e%2f%2e%2e',
  '..%2fvms',
  '/etc/shadow',
  'a/b',
  'x\u0000y',
  'name\nwith\nlines',
  '🚀',
  'é'.repeat(300),
  'a'.repeat(5000),
  '',
  ' ',
  'unix:/etc/passwd',
  'https://198.18.0.99:1',
  'javascript:alert(1)',
  '__proto__',
  'constructor',
  '$(reboot)',
  '${IFS}',
];

function randomValue(rand: () => number, depth = 0): unknown {
  switch (Math.floor(rand() * (depth > 3 ? 6 : 9))) {
    case 0:
      return null;
    case 1:
      return rand() < 0.5;
    case 2:
      return pick(rand, [0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, Number.MAX_SAFE_INTEGER]);
    case 3:
    case 4:
      return pick(rand, NASTY);
    case 5:
      return String(Math.floor(rand() * 1e9));
    case 6:
      return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
    default: {
      const keys = [
        'name',
        'kernel',
        'disks',
        'memoryMiB',
        'vcpus',
        'memoryBackend',
        'path',
        'kind',
        'share',
        'vm',
        'to',
        'options',
        'migrationId',
        'spec',
        'settings',
        'sourceHost',
        'reason',
        '__proto__',
        'unknownField',
      ];
      return Object.fromEntries(
        Array.from({ length: Math.floor(rand() * 6) }, () => [
          pick(rand, keys),
          randomValue(rand, depth + 1),
        ]),
      );
    }
  }
}

/** A spec-shaped body whose kernel is never one the agent may use: no fuzz case can start a VM. */
function specLike(rand: () => number): unknown {
  const spec: Record<string, unknown> = {
    name: rand() < 0.5 ? pick(rand, NASTY) : `vm-${Math.floor(rand() * 100)}`,
    memoryMiB: rand() < 0.7 ? 64 : randomValue(rand),
    vcpus: rand() < 0.7 ? 1 : randomValue(rand),
    kernel: pick(rand, ['/etc/passwd', '/proc/self/environ', '../guest.elf', '/dev/zero', 5, null]),
  };
  if (rand() < 0.4)
    spec.disks = [{ path: pick(rand, NASTY), format: pick(rand, ['raw', 'qcow2', 'vmdk', 1]) }];
  if (rand() < 0.3)
    spec.memoryBackend = { kind: 'file', path: pick(rand, ['/dev/mem', '/etc/shadow']), share: true };
  if (rand() < 0.3) spec.extra = randomValue(rand);
  return spec;
}

function body(rand: () => number): string | Buffer | undefined {
  const r = rand();
  if (r < 0.1) return undefined;
  if (r < 0.25)
    return Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
  if (r < 0.35) return JSON.stringify(randomValue(rand)).slice(0, -1 - Math.floor(rand() * 3));
  if (r < 0.45) return JSON.stringify(specLike(rand));
  if (r < 0.47) return `{"x":"${'a'.repeat(1024 * 1024)}"}`;
  return JSON.stringify(randomValue(rand));
}

interface Answer {
  status: number;
  text: string;
}

/** The routes, their params replaced by nasty text, and a few that do not exist; methods sometimes wrong. */
function target(rand: () => number): { method: string; path: string } {
  const endpoints = [...Object.values(API), 'GET /metrics', 'GET /v1/nothing/:name', 'DELETE /v1/vms/:name'];
  const [method = 'GET', path = '/'] = pick(rand, endpoints).split(' ');
  const filled = path.replace(/:([A-Za-z]+)/g, () =>
    rand() < 0.3 ? `ghost-${Math.floor(rand() * 10)}` : encodeURIComponent(pick(rand, NASTY)),
  );
  const query =
    rand() < 0.3
      ? `?${pick(rand, ['afterSeq', 'minOk', 'waitMs', 'x'])}=${encodeURIComponent(String(randomValue(rand)))}`
      : '';
  const raw = rand() < 0.1 ? filled.replace('/v1/', '/v1/../../') : filled;
  return {
    method: rand() < 0.1 ? pick(rand, ['PUT', 'PATCH', 'DELETE', 'OPTIONS']) : method,
    path: `${raw}${query}`,
  };
}

describe('hostile input at a running agent (seeded fuzz, real TLS)', { timeout: 300_000 }, () => {
  let pki: TestPki;
  let dir: string;
  let agent: Agent;
  let port: number;
  let operator: TlsIdentity;
  let host: TlsIdentity;
  const logs: string[] = [];

  const send = (
    identity: TlsIdentity,
    method: string,
    path: string,
    payload?: string | Buffer,
  ): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          method,
          path,
          agent: false,
          ...identity,
          checkServerIdentity: () => undefined,
          headers: payload === undefined ? {} : { 'content-type': 'application/json' },
          timeout: 20_000,
        },
        (res) => {
          req.socket?.on('error', () => undefined);
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer`)));
      req.on('error', reject);
      req.end(payload);
    });

  /** Every refusal is a 4xx with `{code, message}` whose code the registry maps to that status. */
  function assertRefusal(answer: Answer, what: string): void {
    if (answer.status >= 200 && answer.status < 300) return;
    assert.ok(
      answer.status >= 400 && answer.status < 500,
      `${what}: ${answer.status} ${answer.text.slice(0, 300)}`,
    );
    const parsed = JSON.parse(answer.text) as { code?: unknown; message?: unknown };
    assert.ok(isErrorCode(parsed.code), `${what}: code ${String(parsed.code)}`);
    assert.equal(ERROR_CODES[parsed.code], answer.status, what);
    assert.equal(typeof parsed.message, 'string', what);
  }

  async function stillServing(): Promise<void> {
    const c = new AgentClient(`https://127.0.0.1:${port}`, operator);
    try {
      const summary = await c.get<{ name: string }>(pathOf(API.host));
      assert.equal(summary.name, 'host-a');
    } finally {
      c.close();
    }
  }

  before(async () => {
    pki = await createTestPki();
    dir = mkdtempSync(join(tmpdir(), 'vmf-fuzz-'));
    chmodSync(dir, 0o711);
    operator = await pki.issue('op', [], 'operator');
    host = await pki.issue('host-b');
    let address: string;
    ({ agent, address } = await startLoopbackAgent({
      name: 'host-a',
      stateDir: join(dir, 'state'),
      tls: await pki.issue('host-a'),
      log: (line) => void logs.push(line),
    }));
    port = Number(new URL(address).port);
  });

  after(async () => {
    await agent?.close();
    rmSync(dir, { recursive: true, force: true });
    pki?.dispose();
  });

  it('answers malformed, mistyped, oversized and path-escaping API requests with {code, message} 4xx', async () => {
    const rand = prng(20261130);
    const statuses = new Map<number, number>();
    for (let batch = 0; batch < 40; batch++) {
      const requests = Array.from({ length: 8 }, () => {
        const { method, path } = target(rand);
        const who = rand() < 0.7 ? operator : host;
        const payload = method === 'GET' && rand() < 0.8 ? undefined : body(rand);
        return send(who, method, path, payload).then((answer) => {
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          assertRefusal(answer, `${method} ${path}`);
        });
      });
      await Promise.all(requests);
    }
    await stillServing();
    assert.deepEqual(agent.registry.list(), [], 'no fuzz case started a VM');
    assert.deepEqual(
      logs.filter((l) => /proxy-failed|worker-exited/.test(l)),
      [],
      'no relay worker died and the internal API always answered',
    );
    assert.ok(
      (statuses.get(400) ?? 0) > 20 && (statuses.get(403) ?? 0) > 20 && (statuses.get(404) ?? 0) > 20,
      `every kind of refusal came up: ${JSON.stringify([...statuses])}`,
    );
  });

  it('answers random bytes inside TLS with a JSON 400, and survives random bytes without TLS', async () => {
    const rand = prng(7);
    let answered = 0;
    for (let i = 0; i < 30; i++) {
      const junk = Buffer.from(
        Array.from({ length: 1 + Math.floor(rand() * 2000) }, () => Math.floor(rand() * 256)),
      );
      const prefix =
        rand() < 0.5
          ? Buffer.from(`${pick(rand, ['GET', 'POST', 'BREW'])} /v1/vms HTTP/1.1\r\n`)
          : Buffer.alloc(0);
      const answer = await new Promise<string>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ...operator, checkServerIdentity: () => undefined });
        let text = '';
        s.on('secureConnect', () => s.end(Buffer.concat([prefix, junk, Buffer.from('\r\n\r\n')])));
        s.on('data', (c: Buffer) => (text += c.toString('latin1')));
        s.on('error', () => resolve(text));
        s.on('close', () => resolve(text));
      });
      // Bytes that only ever look like the start of a request get no answer: the connection just ends.
      if (answer === '') continue;
      answered += 1;
      const [head = '', bodyText = ''] = answer.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
      assertRefusal({ status, text: bodyText }, `junk ${i}: ${head.split('\r\n')[0]}`);
      assert.equal(status, 400, `junk ${i}`);
    }
    assert.ok(answered >= 20, `${answered} of 30 junk streams answered`);
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const s = netConnect({ host: '127.0.0.1', port }, () =>
          s.end(
            Buffer.from(Array.from({ length: Math.floor(rand() * 4000) }, () => Math.floor(rand() * 256))),
          ),
        );
        s.on('data', () => undefined);
        s.on('error', () => resolve());
        s.on('close', () => resolve());
      });
    }
    await stillServing();
  });

  it('refuses hostile tunnel upgrades with {code, message} 4xx, whoever asks', async () => {
    const rand = prng(99);
    for (let i = 0; i < 60; i++) {
      const who = pick(rand, [operator, host]);
      const path =
        rand() < 0.7
          ? `/v1/tunnel/${encodeURIComponent(pick(rand, [...NASTY, 'mig-1', 'x'.repeat(200)]))}`
          : pick(rand, NASTY);
      const upgrade =
        rand() < 0.8 ? TUNNEL_PROTOCOL : pick(rand, ['websocket', 'h2c', '', 'VMFERRY-TUNNEL ']);
      const token = rand() < 0.5 ? pick(rand, NASTY) : 'A'.repeat(Math.floor(rand() * 100));
      const text = await new Promise<string>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ...who, checkServerIdentity: () => undefined });
        let got = '';
        s.on('secureConnect', () =>
          s.write(
            `GET ${path.replace(/[\r\n ]/g, '_') || '/'} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\n` +
              `${TOKEN_HEADER}: ${token.replace(/[\r\n\0]/g, '_')}\r\n\r\n`,
          ),
        );
        s.on('data', (c: Buffer) => (got += c.toString('utf8')));
        s.on('error', () => resolve(got));
        s.on('close', () => resolve(got));
      });
      const [head = '', bodyText = ''] = text.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
      assert.ok(status >= 400 && status < 500, `upgrade ${i} (${path}, ${upgrade}): ${head}`);
      assertRefusal({ status, text: bodyText }, `upgrade ${i} (${path}, ${upgrade})`);
    }
    await stillServing();
  });
});
