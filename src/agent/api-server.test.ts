import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError } from '../errors.js';
import { PEER_CN_HEADER } from '../transport/index.js';
import { API_SCHEMAS } from './api-schemas.js';
import { ApiServer, MAX_BODY_BYTES, Reply, type ApiRequest } from './api-server.js';
import { registerMetricsRoute, registerRoutes, type RouteDeps } from './routes.js';

function server(): { api: ApiServer; seen: ApiRequest[] } {
  const seen: ApiRequest[] = [];
  const api = new ApiServer()
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

async function post(api: ApiServer, url: string, payload: unknown, headers: Record<string, string> = {}) {
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
      { [PEER_CN_HEADER]: 'operator' },
    );
    assert.equal(r.status, 202);
    assert.deepEqual(r.body, { id: 'm-1', settings: { transport: 'native' }, extra: 'kept' });
    assert.equal(seen[0]?.peer.commonName, 'operator');
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
    const ok = await api.inject({ method: 'GET', url: '/v1/vms/web-1/health?afterSeq=41&minOk=2' });
    assert.deepEqual(ok.json(), { state: 'ok', lastSeq: 42 });
    const bad = await api.inject({ method: 'GET', url: '/v1/vms/web-1/health?afterSeq=-1&verbose=1' });
    assert.equal(bad.statusCode, 400);
    assert.equal(
      bad.json<{ message: string }>().message,
      'querystring has an unknown field "verbose"; querystring.afterSeq must match pattern "^[0-9]{1,9}$"',
    );
  });

  it('refuses a body over the limit, one that is not JSON, and one of another type', async () => {
    const { api } = server();
    const big = await post(api, '/v1/incoming/m-1/abort', { reason: 'x'.repeat(MAX_BODY_BYTES) });
    assert.deepEqual(
      [big.status, big.body.message],
      [400, `request body larger than ${MAX_BODY_BYTES} bytes`],
    );
    const broken = await api.inject({
      method: 'POST',
      url: '/v1/incoming/m-1/abort',
      payload: '{"reason": ',
      headers: { 'content-type': 'application/json' },
    });
    assert.deepEqual(
      [broken.statusCode, broken.json<{ message: string }>().message],
      [400, 'request body is not valid JSON'],
    );
    const text = await api.inject({
      method: 'POST',
      url: '/v1/incoming/m-1/abort',
      payload: 'reason=none',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
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
    const missing = await api.inject({ method: 'GET', url: '/v1/nope' });
    assert.equal(missing.statusCode, 404);
    assert.deepEqual(missing.json(), { code: 'VMF_ERR_NOT_FOUND', message: 'no API endpoint GET /v1/nope' });
    const wrong = await api.inject({ method: 'DELETE', url: '/v1/migrations' });
    assert.equal(wrong.statusCode, 400);
    assert.deepEqual(wrong.json(), {
      code: 'VMF_ERR_USAGE',
      message: 'DELETE is not allowed on /v1/migrations',
    });
  });

  it('sends a reply that is not JSON as it is, with its content type', async () => {
    const { api } = server();
    const r = await api.inject({ method: 'GET', url: '/metrics' });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4');
    assert.equal(r.body, 'vmferry_up 1\n');
  });

  it('has a schema for every endpoint the agent serves, and refuses to serve one without', () => {
    const api = new ApiServer();
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
});
