import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import {
  INTERNAL_SECRET_HEADER,
  PEER_CN_HEADER,
  PEER_ROLE_HEADER,
  admitConnection,
  decideTunnelRequest,
  nextWorkerIndex,
  parseUpgradeResponse,
  proxyRequestHeaders,
  proxyResponseHeaders,
  refusal,
  tokensEqual,
  tunnelIdFromPath,
  tunnelRefused,
  tunnelRequest,
  validateRegistration,
  validateSourceTunnel,
  type TunnelRegistration,
} from './tunnel-policy.js';
import type { Role } from '../pki/index.js';

const registration: TunnelRegistration = {
  migrationId: 'mig-42',
  token: 'secret-token-0123456789',
  peerCommonName: 'agent-a',
  targetPath: '/run/vmf/mig-42/incoming.sock',
  maxConnections: 5,
};
const registrations = new Map([[registration.migrationId, registration]]);

function request(
  overrides: { url?: string; headers?: Record<string, string>; cn?: string; role?: Role | undefined } = {},
) {
  return {
    url: overrides.url ?? '/v1/tunnel/mig-42',
    headers: {
      upgrade: 'vmferry-tunnel',
      connection: 'Upgrade',
      'x-vmferry-token': registration.token,
      ...overrides.headers,
    },
    peerCommonName: overrides.cn ?? 'agent-a',
    peerRole: 'role' in overrides ? overrides.role : ('host' as const),
    tunnelRoles: ['host'] as const,
    registrations,
  };
}

describe('tunnel tokens', () => {
  it('compares equal and unequal tokens, of any lengths', () => {
    assert.equal(tokensEqual('abc', 'abc'), true);
    assert.equal(tokensEqual('abd', 'abc'), false);
    assert.equal(tokensEqual('abcd', 'abc'), false);
    assert.equal(tokensEqual('', 'abc'), false);
  });

  it('never matches an empty expected token', () => {
    assert.equal(tokensEqual('', ''), false);
  });
});

describe('tunnel request decisions', () => {
  it('accepts the registered migration with its token from its peer', () => {
    const d = decideTunnelRequest(request());
    assert.equal(d.accept, true);
    if (d.accept) assert.equal(d.registration.targetPath, registration.targetPath);
  });

  it('takes the upgrade protocol case-insensitively and ignores a query string', () => {
    const d = decideTunnelRequest(
      request({ url: '/v1/tunnel/mig-42?x=1', headers: { upgrade: 'VMFerry-Tunnel' } }),
    );
    assert.equal(d.accept, true);
  });

  it('refuses a wrong token, an unknown migration and another peer with the same 403', () => {
    for (const r of [
      request({ headers: { 'x-vmferry-token': 'secret-token-0123456780' } }),
      request({ headers: { 'x-vmferry-token': '' } }),
      request({ url: '/v1/tunnel/mig-43' }),
      request({ cn: 'agent-c' }),
      request({ role: 'operator' }),
      request({ role: 'viewer' }),
      request({ role: undefined }),
    ]) {
      const d = decideTunnelRequest(r);
      assert.equal(d.accept, false);
      if (!d.accept) {
        assert.equal(d.status, 403);
        assert.equal(d.error.message, 'tunnel refused');
      }
    }
  });

  it('gives the log a reason that names what was wrong', () => {
    const d = decideTunnelRequest(request({ cn: 'agent-c' }));
    assert.ok(!d.accept && /agent-c/.test(d.reason) && /agent-a/.test(d.reason));
    const t = decideTunnelRequest(request({ headers: { 'x-vmferry-token': 'nope' } }));
    assert.ok(!t.accept && /token/.test(t.reason) && !t.reason.includes(registration.token));
    const o = decideTunnelRequest(request({ role: 'operator' }));
    assert.ok(!o.accept);
    assert.equal(o.reason, 'operator "agent-a" may not open tunnels (host only)');
    const n = decideTunnelRequest(request({ role: undefined }));
    assert.ok(!n.accept);
    assert.equal(n.reason, 'a certificate without a role "agent-a" may not open tunnels (host only)');
  });

  it('answers 400 to another upgrade protocol and 404 to another path', () => {
    const p = decideTunnelRequest(request({ headers: { upgrade: 'websocket' } }));
    assert.ok(!p.accept && p.status === 400);
    for (const url of ['/v1/tunnels/mig-42', '/v1/tunnel/', '/v1/tunnel/a/b', '/v1/tunnel/%2e%2e']) {
      const d = decideTunnelRequest(request({ url }));
      assert.ok(!d.accept && d.status === 404, url);
    }
  });

  it('parses tunnel paths', () => {
    assert.equal(tunnelIdFromPath('/v1/tunnel/abc.DEF_1~-'), 'abc.DEF_1~-');
    assert.equal(tunnelIdFromPath('/v1/tunnel/a b'), undefined);
    assert.equal(tunnelIdFromPath(undefined), undefined);
    assert.equal(tunnelIdFromPath(`/v1/tunnel/${'x'.repeat(129)}`), undefined);
  });

  it('budgets connections ever accepted', () => {
    assert.equal(admitConnection(0, 1), true);
    assert.equal(admitConnection(4, 5), true);
    assert.equal(admitConnection(5, 5), false);
  });
});

describe('worker selection', () => {
  it('goes round-robin over live workers', () => {
    const alive = [true, true, true];
    const seen: number[] = [];
    let cursor = -1;
    for (let i = 0; i < 6; i++) {
      cursor = nextWorkerIndex(cursor, alive);
      seen.push(cursor);
    }
    assert.deepEqual(seen, [0, 1, 2, 0, 1, 2]);
  });

  it('skips dead workers and reports when none lives', () => {
    assert.equal(nextWorkerIndex(0, [true, false, true]), 2);
    assert.equal(nextWorkerIndex(2, [true, false, true]), 0);
    assert.equal(nextWorkerIndex(1, [false, true, false]), 1);
    assert.equal(nextWorkerIndex(0, [false, false]), -1);
    assert.equal(nextWorkerIndex(-1, []), -1);
  });
});

describe('proxy headers', () => {
  it('sets the peer CN, role and the secret itself and drops client-sent ones', () => {
    const out = proxyRequestHeaders(
      {
        [PEER_CN_HEADER]: 'root',
        [PEER_ROLE_HEADER]: 'operator',
        [INTERNAL_SECRET_HEADER]: 'guess',
        accept: 'application/json',
      },
      { commonName: 'agent-a', role: 'viewer' },
      'per-start-secret',
    );
    assert.equal(out[PEER_CN_HEADER], 'agent-a');
    assert.equal(out[PEER_ROLE_HEADER], 'viewer');
    assert.equal(out[INTERNAL_SECRET_HEADER], 'per-start-secret');
    assert.equal(out.accept, 'application/json');
    const none = proxyRequestHeaders({}, { commonName: 'old', role: undefined }, 's');
    assert.equal(none[PEER_ROLE_HEADER], '');
  });

  it('drops hop-by-hop headers and those the Connection header lists', () => {
    const out = proxyRequestHeaders(
      {
        connection: 'keep-alive, x-hop',
        'keep-alive': 'timeout=5',
        'x-hop': '1',
        'transfer-encoding': 'chunked',
        host: 'agent:7443',
        'content-type': 'application/json',
        'content-length': '12',
      },
      { commonName: 'agent-a', role: 'host' },
      'secret',
    );
    assert.deepEqual(
      Object.keys(out).sort(),
      ['content-length', 'content-type', PEER_CN_HEADER, PEER_ROLE_HEADER, INTERNAL_SECRET_HEADER].sort(),
    );
    const res = proxyResponseHeaders({
      connection: 'close',
      'content-type': 'text/plain',
      'set-cookie': ['a', 'b'],
    });
    assert.deepEqual(res, { 'content-type': 'text/plain', 'set-cookie': ['a', 'b'] });
  });
});

describe('tunnel handshake text', () => {
  it('builds the upgrade request', () => {
    const text = tunnelRequest('mig-42', 'tok', '198.18.0.2:7443');
    assert.match(text, /^GET \/v1\/tunnel\/mig-42 HTTP\/1\.1\r\n/);
    assert.match(text, /\r\nUpgrade: vmferry-tunnel\r\n/);
    assert.match(text, /\r\nx-vmferry-token: tok\r\n\r\n$/);
  });

  it('parses the reply in pieces and keeps the bytes after it', () => {
    assert.deepEqual(parseUpgradeResponse(Buffer.from('HTTP/1.1 101 Switching')), { complete: false });
    const r = parseUpgradeResponse(Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nQEMU'));
    assert.ok(r.complete);
    assert.equal(r.status, 101);
    assert.equal(r.body, 'QEMU');
    assert.equal(r.headerBytes, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n'.length);
  });

  it('reads a refusal with its body, and gives up on an endless head', () => {
    const r = parseUpgradeResponse(Buffer.from(refusal(tunnelRefused())));
    assert.ok(r.complete && r.status === 403 && r.body.includes('VMF_ERR_AUTH'));
    const junk = parseUpgradeResponse(Buffer.alloc(20_000, 0x41));
    assert.ok(junk.complete && junk.status === 0);
  });
});

describe('tunnel registration checks', () => {
  it('accepts a good one', () => {
    assert.deepEqual(validateRegistration(registration), registration);
  });

  it('names the bad field and never prints the token', () => {
    const cases: [Partial<TunnelRegistration>, RegExp][] = [
      [{ migrationId: 'a/b' }, /migrationId/],
      [{ token: 'short' }, /token/],
      [{ token: 'x'.repeat(20) + '\r\n' }, /token/],
      [{ peerCommonName: '' }, /peerCommonName/],
      [{ targetPath: 'relative.sock' }, /targetPath/],
      [{ maxConnections: 0 }, /maxConnections/],
      [{ maxConnections: 1.5 }, /maxConnections/],
    ];
    for (const [patch, pattern] of cases) {
      assert.throws(
        () => validateRegistration({ ...registration, ...patch }),
        (err: unknown) =>
          err instanceof UsageError && pattern.test(err.message) && !err.message.includes('xxxx'),
      );
    }
  });
});

describe('validateSourceTunnel', () => {
  const ok = { migrationId: 'm-1', listenPath: '/run/t.sock', token: 'x'.repeat(32) };

  it('accepts a valid id, an absolute path and a one-line token', () => {
    validateSourceTunnel(ok);
  });

  it('refuses each bad option, naming it', () => {
    const cases: [Partial<typeof ok>, string][] = [
      [{ migrationId: 'a b' }, 'tunnel migrationId "a b" is not a valid id'],
      [{ listenPath: 'rel.sock' }, 'tunnel listenPath must be absolute, got "rel.sock"'],
      [{ token: '' }, 'tunnel token must be a non-empty string on one line'],
      [{ token: 'ab\ncd' }, 'tunnel token must be a non-empty string on one line'],
    ];
    for (const [bad, message] of cases) {
      assert.throws(
        () => validateSourceTunnel({ ...ok, ...bad }),
        (err: unknown) => err instanceof UsageError && err.message === message,
        message,
      );
    }
  });
});
