import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConflictError } from '../errors.js';
import { INTERNAL_SECRET_HEADER, PEER_CN_HEADER, PEER_ROLE_HEADER } from '../transport/index.js';
import { API } from './api-client.js';
import { API_SCHEMAS } from './api-schemas.js';
import { ApiServer, MAX_BODY_BYTES, Reply, type ApiRequest } from './api-server.js';
import { routeNamed } from './route-access.js';
import { registerMetricsRoute, registerRoutes, type RouteDeps } from './routes.js';

const SECRET = 'a-per-start-secret-of-the-agent';

/** The headers the front door sets for a caller with this role. */
function front(role: string, cn = 'operator'): Record<string, string> {
  return { [INTERNAL_SECRET_HEADER]: SECRET, [PEER_CN_HEADER]: cn, [PEER_ROLE_HEADER]: role };
}
const OPERATOR = front('operator');

function server(): { api: ApiServer; seen: ApiRequest[] } {
  const seen: ApiRequest[] = [];
  const api = new ApiServer(SECRET)
    .route('POST /v1/migrations', (req) => {
      seen.push(req);
      return Promise.resolve(new Reply(202, { id: 'm-1', settings: { transport: 'native' }, extra: 'kept' }));
    })
    .route('GET /v1/vms/:name/health', (req) => {
      seen.push(req);
      return Promise.resolve({ state: 'ok', lastSeq: Number(req.query.get('afterSeq')) + 1 });
    })
    .route('POST /v1/migrations/:id/abort', (req) => {
      throw new ConflictError(`migration ${req.params.id} cannot be aborted: it is handing over`, {
        hint: 'it finishes on its own',
      });
    })
    .route('POST /v1/incoming/:id/abort', () => Promise.resolve({}))
    .route('GET /metrics', () =>
      Promise.resolve(new Reply(200, 'vmferry_up 1\n', 'text/plain; version=0.0.4')),
    );
  return { api, seen };
}

async function post(
  api: ApiServer,
  url: string,
  payload: unknown,
  headers: Record<string, string> = OPERATOR,
) {
  const res = await api.inject({ method: 'POST', url, payload: payload as string, headers });
  return { status: res.statusCode, body: res.json<Record<string, unknown>>(), headers: res.headers };
}

describe('agent API server (fastify)', () => {
  it('passes a valid request through with the peer name, and keeps reply fields beyond the schema', async () => {
    const { api, seen } = server();
    const r = await post(
      api,
      '/v1/migrations',
      { vm: 'web-1', to: 'https://198.18.0.2:7700', options: { bandwidthMiBps: 16, postCopy: true } },
      OPERATOR,
    );
    assert.equal(r.status, 202);
    assert.deepEqual(r.body, { id: 'm-1', settings: { transport: 'native' }, extra: 'kept' });
    assert.deepEqual(seen[0]?.peer, { commonName: 'operator', role: 'operator' });
    assert.deepEqual(seen[0]?.body, {
      vm: 'web-1',
      to: 'https://198.18.0.2:7700',
      options: { bandwidthMiBps: 16, postCopy: true },
    });
  });

  for (const [what, body, message] of [
    ['an unknown field', { vm: 'a', to: 'b', vmm: 'c' }, 'body has an unknown field "vmm"'],
    [
      'an unknown override',
      { vm: 'a', to: 'b', options: { bandwith: 5 } },
      'body.options has an unknown field "bandwith"',
    ],
    ['a field of the wrong type', { vm: 'a', to: 5 }, 'body.to must be string'],
    ['a missing field', { vm: 'a' }, "body must have required property 'to'"],
    [
      'a value out of range',
      { vm: 'a', to: 'b', options: { channels: 0 } },
      'body.options.channels must be >= 1',
    ],
    [
      'an unknown choice',
      { vm: 'a', to: 'b', options: { transport: 'carrier-pigeon' } },
      'body.options.transport must be equal to one of the allowed values',
    ],
  ] as const) {
    it(`refuses ${what} in a body, naming it, in the one error shape`, async () => {
      const { api, seen } = server();
      const r = await post(api, '/v1/migrations', body);
      assert.equal(r.status, 400);
      assert.deepEqual(r.body, {
        code: 'VMF_ERR_USAGE',
        message,
        hint: 'the agent API takes only the fields it documents (src/agent/api-schemas.ts)',
      });
      assert.equal(seen.length, 0, 'the handler never ran');
    });
  }

  it('checks query strings: numbers arrive as text, unknown parameters are refused', async () => {
    const { api } = server();
    const ok = await api.inject({
      method: 'GET',
      url: '/v1/vms/web-1/health?afterSeq=41&minOk=2',
      headers: OPERATOR,
    });
    assert.deepEqual(ok.json(), { state: 'ok', lastSeq: 42 });
    const bad = await api.inject({
      method: 'GET',
      url: '/v1/vms/web-1/health?afterSeq=-1&verbose=1',
      headers: OPERATOR,
    });
    assert.equal(bad.statusCode, 400);
    assert.equal(
      bad.json<{ message: string }>().message,
      'querystring has an unknown field "verbose"; querystring.afterSeq must match pattern "^[0-9]{1,9}$"',
    );
  });

  it('refuses a body over the limit, one that is not JSON, and one of another type', async () => {
    const { api } = server();
    const big = await post(
      api,
      '/v1/incoming/m-1/abort',
      { reason: 'x'.repeat(MAX_BODY_BYTES) },
      front('host', 'host-a'),
    );
    assert.deepEqual(
      [big.status, big.body.message],
      [400, `request body larger than ${MAX_BODY_BYTES} bytes`],
    );
    const broken = await api.inject({
      method: 'POST',
      url: '/v1/incoming/m-1/abort',
      payload: '{"reason": ',
      headers: { 'content-type': 'application/json', ...front('host', 'host-a') },
    });
    assert.deepEqual(
      [broken.statusCode, broken.json<{ message: string }>().message],
      [400, 'request body is not valid JSON'],
    );
    const text = await api.inject({
      method: 'POST',
      url: '/v1/incoming/m-1/abort',
      payload: 'reason=none',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...front('host', 'host-a') },
    });
    assert.deepEqual(
      [text.statusCode, text.json<{ message: string }>().message],
      [400, 'request body must be JSON (content-type: application/json)'],
    );
  });

  it("answers a handler's error with its status, code, message and hint", async () => {
    const { api } = server();
    const r = await post(api, '/v1/migrations/m-7/abort', {});
    assert.equal(r.status, 409);
    assert.deepEqual(r.body, {
      code: 'VMF_ERR_CONFLICT',
      message: 'migration m-7 cannot be aborted: it is handing over',
      hint: 'it finishes on its own',
    });
  });

  it('names an unknown endpoint, and a method a known path does not take', async () => {
    const { api } = server();
    const missing = await api.inject({ method: 'GET', url: '/v1/nope', headers: OPERATOR });
    assert.equal(missing.statusCode, 404);
    assert.deepEqual(missing.json(), { code: 'VMF_ERR_NOT_FOUND', message: 'no API endpoint GET /v1/nope' });
    const wrong = await api.inject({ method: 'DELETE', url: '/v1/migrations', headers: OPERATOR });
    assert.equal(wrong.statusCode, 400);
    assert.deepEqual(wrong.json(), {
      code: 'VMF_ERR_USAGE',
      message: 'DELETE is not allowed on /v1/migrations',
    });
  });

  it('sends a reply that is not JSON as it is, with its content type', async () => {
    const { api } = server();
    const r = await api.inject({ method: 'GET', url: '/metrics', headers: front('metrics', 'prometheus') });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4');
    assert.equal(r.body, 'vmferry_up 1\n');
  });

  it('has a schema for every endpoint the agent serves, and refuses to serve one without', () => {
    const api = new ApiServer(SECRET);
    // Registration reads no dependency: the routes only close over them.
    registerRoutes(api, {} as RouteDeps);
    registerMetricsRoute(api, {} as Parameters<typeof registerMetricsRoute>[1]);
    assert.throws(
      () => api.route('GET /v1/undocumented', () => Promise.resolve({})),
      /the API endpoint GET \/v1\/undocumented has no schema in api-schemas.ts/,
    );
    for (const [endpoint, schema] of Object.entries(API_SCHEMAS))
      if (endpoint.startsWith('POST ')) assert.ok(schema.body !== undefined, `${endpoint} has a body schema`);
  });

  it('serves no route the route table lacks: every endpoint it serves has a row', () => {
    const api = new ApiServer(SECRET);
    registerRoutes(api, {} as RouteDeps);
    registerMetricsRoute(api, {} as Parameters<typeof registerMetricsRoute>[1]);
    assert.deepEqual(
      api.endpoints.filter((e) => routeNamed(e) === undefined),
      [],
    );
    assert.deepEqual(
      Object.values(API).filter((e) => !api.endpoints.includes(e)),
      [],
      'every endpoint of the API table is served',
    );
  });

  it('refuses a request without the front door secret, whatever it claims to be', async () => {
    const { api, seen } = server();
    const unsigned: Record<string, string>[] = [
      { [PEER_CN_HEADER]: 'root', [PEER_ROLE_HEADER]: 'operator' },
      { ...OPERATOR, [INTERNAL_SECRET_HEADER]: 'not-the-secret' },
    ];
    for (const headers of unsigned) {
      for (const url of ['/v1/migrations', '/v1/nope']) {
        const r = await post(api, url, { vm: 'a', to: 'b' }, headers);
        assert.equal(r.status, 403);
        assert.deepEqual(r.body, {
          code: 'VMF_ERR_AUTH',
          message: "only the agent's TLS front door may call its internal API",
        });
      }
    }
    assert.equal(seen.length, 0);
  });

  it('refuses a role the route table does not let in, before its body is read or its handler runs', async () => {
    const { api, seen } = server();
    const viewer = await post(api, '/v1/migrations', 'not even JSON', front('viewer', 'alice'));
    assert.deepEqual(
      [viewer.status, viewer.body.code, viewer.body.message],
      [403, 'VMF_ERR_AUTH', 'viewer "alice" may not call POST /v1/migrations'],
    );
    const none = await post(api, '/v1/migrations', {}, front('', 'old-op'));
    assert.equal(
      none.body.message,
      'the certificate of "old-op" names no vmferry role (it may not call POST /v1/migrations)',
    );
    const host = await post(api, '/v1/migrations', { vm: 'a', to: 'b' }, front('host', 'host-b'));
    assert.equal(host.body.message, 'host "host-b" may not call POST /v1/migrations');
    assert.equal(seen.length, 0);
  });

  it('listens on a socket that is owner-only from the start, and closes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmf-api-'));
    const { api } = server();
    try {
      await api.listen(join(dir, 'api.sock'));
      assert.equal(lstatSync(join(dir, 'api.sock')).mode & 0o777, 0o600);
      const answer = await new Promise<number>((resolve, reject) => {
        const req = request(
          { socketPath: join(dir, 'api.sock'), path: '/metrics', headers: OPERATOR },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(answer, 200);
    } finally {
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers paths it cannot route, a bad encoding or a name too long, in the one error shape', async () => {
    const { api } = server();
    const bad = await api.inject({ method: 'POST', url: '/v1/migrations/%E0%A4%A/abort', headers: OPERATOR });
    assert.deepEqual(
      [bad.statusCode, bad.json()],
      [
        400,
        { code: 'VMF_ERR_USAGE', message: 'the request path is not a valid URL (bad percent-encoding?)' },
      ],
    );
    const long = await api.inject({
      method: 'POST',
      url: `/v1/migrations/${'é'.repeat(200)}/abort`,
      headers: OPERATOR,
    });
    assert.deepEqual(
      [long.statusCode, long.json()],
      [
        400,
        { code: 'VMF_ERR_USAGE', message: 'a name or id in the request path is longer than 100 characters' },
      ],
    );
  });

  it('wants a secret worth the name', () => {
    assert.throws(() => new ApiServer('short'), /at least 16 characters/);
  });
});
