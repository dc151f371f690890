import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ACTION_HEADER, DashboardServer } from './dashboard-server.js';

function call(
  url: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('dashboard server (no agents)', () => {
  let dashboard: DashboardServer;

  before(async () => {
    dashboard = await DashboardServer.start({
      listen: { host: '127.0.0.1', port: 0 },
      agents: [],
      intervalMs: 60_000,
    });
  });
  after(async () => {
    await dashboard?.close();
  });

  it('serves the page, its script and style under a strict content security policy', async () => {
    const page = await call(dashboard.url);
    assert.equal(page.status, 200);
    assert.match(page.body, /<script src="\/app.js" defer><\/script>/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
    const script = await call(`${dashboard.url}app.js`);
    assert.equal(script.status, 200);
    assert.match(script.body, /new EventSource\('\/events'\)/);
    assert.equal((await call(`${dashboard.url}style.css`)).status, 200);
    assert.deepEqual(
      (JSON.parse((await call(`${dashboard.url}api/state`)).body) as { hosts: unknown[] }).hosts,
      [],
    );
  });

  it('refuses requests addressed to another host name (DNS rebinding)', async () => {
    const r = await call(dashboard.url, { headers: { host: 'attacker.example:8080' } });
    assert.equal(r.status, 403);
    const body = JSON.parse(r.body) as { code: string; message: string };
    assert.equal(body.code, 'VMF_ERR_AUTH');
    assert.equal(body.message, 'requests for host "attacker.example:8080" are refused');
  });

  it("refuses an action without the page's header or from another origin (CSRF)", async () => {
    const path = `${dashboard.url}api/hosts/0/migrations/m-1/abort`;
    const attempts: Record<string, string>[] = [
      {},
      { [ACTION_HEADER]: '1', origin: 'https://attacker.example' },
    ];
    for (const headers of attempts) {
      const r = await call(path, { method: 'POST', headers });
      assert.equal(r.status, 403);
      assert.deepEqual(JSON.parse(r.body), {
        code: 'VMF_ERR_AUTH',
        message: 'actions are taken from the dashboard page only',
        hint: `open ${dashboard.url}`,
      });
    }
  });

  it('names a host number it does not follow, and an unknown page', async () => {
    const r = await call(`${dashboard.url}api/hosts/3/migrations/m-1/force-complete`, {
      method: 'POST',
      headers: { [ACTION_HEADER]: '1' },
    });
    assert.equal(r.status, 404);
    assert.equal(
      (JSON.parse(r.body) as { message: string }).message,
      'the dashboard follows no host number 3',
    );
    const missing = await call(`${dashboard.url}nope`);
    assert.equal(missing.status, 404);
    assert.equal((JSON.parse(missing.body) as { message: string }).message, 'no dashboard page GET /nope');
  });

  it('streams the state as server-sent events', async () => {
    const first = await new Promise<string>((resolve, reject) => {
      const req = request(`${dashboard.url}events`, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
          if (text.includes('event: state\ndata: ')) {
            resolve(text);
            req.destroy();
          }
        });
      });
      req.on('error', reject);
      req.end();
    });
    assert.match(
      first,
      /^retry: 2000\n\nevent: state\ndata: \{"time":\d+,"hosts":\[\],"active":\[\],"finished":\[\]\}\n\n$/,
    );
  });
});
