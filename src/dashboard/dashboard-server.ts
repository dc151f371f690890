import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentApi } from '../agent/index.js';
import { fetchChartInput, renderMigrationSvg } from '../chart/index.js';
import { AuthError, InternalError, NotFoundError, VmferryError, describeError } from '../errors.js';
import { isTerminalMigrationState } from '../migration/index.js';
import type { ListenAddress } from './listen-address.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './page.js';
import { dashboardSnapshot, type AgentReading, type DashboardSnapshot } from './snapshot.js';

export interface DashboardAgent {
  /** As the operator gave it (https://HOST:PORT or unix:PATH). */
  address: string;
  api: AgentApi;
}

export interface DashboardOptions {
  listen: ListenAddress;
  agents: readonly DashboardAgent[];
  /** How often the agents are read and the page updated. */
  intervalMs: number;
  now?: () => number;
  log?: (line: string) => void;
}

/** The header the page's own script sets on actions: a form on another site cannot send it. */
export const ACTION_HEADER = 'x-vmferry-dashboard';

type Action = 'abort' | 'force-complete';

/** One round of calls to one agent; a failure is recorded, not thrown (the host shows as unreachable). */
export async function readAgent(api: AgentApi, timeoutMs: number): Promise<AgentReading> {
  let error: string | undefined;
  const attempt = async <T>(call: Promise<T>): Promise<T | undefined> => {
    try {
      return await call;
    } catch (err) {
      error ??= describeError(err);
      return undefined;
    }
  };
  const options = { timeoutMs };
  const [host, vms, migrations] = await Promise.all([
    attempt(api.host(options)),
    attempt(api.vms(options)),
    attempt(api.migrations(options)),
  ]);
  const live: AgentReading['live'] = {};
  const running = (migrations ?? []).filter((m) => m.role === 'source' && !isTerminalMigrationState(m.state));
  await Promise.all(
    running.map(async (m) => {
      const view = await attempt(api.migration(m.id, options));
      if (view?.live !== undefined) live[m.id] = view.live;
    }),
  );
  return { host, vms, migrations, live, error };
}

/**
 * The operator's live dashboard: reads every agent it was given with the
 * operator's certificate, and serves one page that follows them by server-sent
 * events, with abort / force-complete and each finished migration's chart.
 * Loopback only (see parseDashboardListen); requests naming another Host are
 * refused (DNS rebinding), actions need the page's own header (CSRF).
 */
export class DashboardServer {
  private readonly options: DashboardOptions;
  private readonly server: Server;
  private readonly streams = new Set<ServerResponse>();
  private snapshot: DashboardSnapshot | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private port = 0;

  private constructor(options: DashboardOptions) {
    this.options = options;
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  static async start(options: DashboardOptions): Promise<DashboardServer> {
    const dashboard = new DashboardServer(options);
    await new Promise<void>((resolve, reject) => {
      dashboard.server.once('error', reject);
      dashboard.server.listen(options.listen.port, options.listen.host, () => {
        dashboard.server.off('error', reject);
        resolve();
      });
    });
    dashboard.port = (dashboard.server.address() as AddressInfo).port;
    await dashboard.refresh();
    return dashboard;
  }

  /** The page's address. */
  get url(): string {
    const host = this.options.listen.host.includes(':')
      ? `[${this.options.listen.host}]`
      : this.options.listen.host;
    return `http://${host}:${this.port}/`;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const res of this.streams) res.end();
    this.streams.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Reads every agent once, publishes the result, and schedules the next round. */
  private async refresh(): Promise<void> {
    const { agents, intervalMs } = this.options;
    const timeoutMs = Math.max(2000, 3 * intervalMs);
    const readings = await Promise.all(
      agents.map(async (a) => ({ address: a.address, reading: await readAgent(a.api, timeoutMs) })),
    );
    this.snapshot = dashboardSnapshot((this.options.now ?? Date.now)(), readings);
    const event = `event: state\ndata: ${JSON.stringify(this.snapshot)}\n\n`;
    for (const res of this.streams) res.write(event);
    if (!this.closed)
      this.timer = setTimeout(() => {
        this.refresh().catch((err: unknown) => this.options.log?.(`dashboard: ${describeError(err)}`));
      }, intervalMs);
  }

  private hostAllowed(req: IncomingMessage): boolean {
    const allowed = [
      `${this.options.listen.host}:${this.port}`,
      `[${this.options.listen.host}]:${this.port}`,
      `localhost:${this.port}`,
      `127.0.0.1:${this.port}`,
    ];
    return allowed.includes(req.headers.host ?? '');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (!this.hostAllowed(req))
        throw new AuthError(`requests for host ${JSON.stringify(req.headers.host ?? '')} are refused`, {
          hint: `open ${this.url}`,
        });
      const url = new URL(req.url ?? '/', 'http://dashboard');
      const method = req.method ?? 'GET';
      const path = url.pathname;
      if (method === 'GET' && path === '/')
        return sendText(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML);
      if (method === 'GET' && path === '/app.js')
        return sendText(res, 200, 'text/javascript; charset=utf-8', DASHBOARD_JS);
      if (method === 'GET' && path === '/style.css')
        return sendText(res, 200, 'text/css; charset=utf-8', DASHBOARD_CSS);
      if (method === 'GET' && path === '/api/state') return sendJson(res, 200, this.snapshot ?? {});
      if (method === 'GET' && path === '/events') return this.stream(res);
      const chart = /^\/charts\/(\d+)\/([^/]+)\.svg$/.exec(path);
      if (method === 'GET' && chart !== null) {
        const input = await fetchChartInput(this.agent(chart[1] ?? ''), decodeURIComponent(chart[2] ?? ''));
        return sendText(res, 200, 'image/svg+xml; charset=utf-8', renderMigrationSvg(input));
      }
      const action = /^\/api\/hosts\/(\d+)\/migrations\/([^/]+)\/(abort|force-complete)$/.exec(path);
      if (method === 'POST' && action !== null) {
        if (req.headers[ACTION_HEADER] !== '1' || !this.sameOrigin(req))
          throw new AuthError('actions are taken from the dashboard page only', { hint: `open ${this.url}` });
        const id = decodeURIComponent(action[2] ?? '');
        const what = action[3] as Action;
        const agent = this.agent(action[1] ?? '');
        await (what === 'abort' ? agent.abortMigration(id) : agent.forceComplete(id));
        this.options.log?.(`dashboard: ${what} requested for migration ${id}`);
        return sendJson(res, 202, { id, requested: what });
      }
      throw new NotFoundError(`no dashboard page ${method} ${path}`);
    } catch (err) {
      const e =
        err instanceof VmferryError ? err : new InternalError(`internal error: ${describeError(err)}`);
      sendJson(res, e.httpStatus, e.toJSON());
    }
  }

  private sameOrigin(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    return (
      origin === undefined ||
      origin === this.url.replace(/\/$/, '') ||
      origin === `http://${req.headers.host}`
    );
  }

  private agent(key: string): AgentApi {
    const agent = this.options.agents[Number(key)];
    if (agent === undefined) throw new NotFoundError(`the dashboard follows no host number ${key}`);
    return agent.api;
  }

  private stream(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    // The browser reconnects after this long if the dashboard restarts.
    res.write('retry: 2000\n\n');
    if (this.snapshot !== undefined) res.write(`event: state\ndata: ${JSON.stringify(this.snapshot)}\n\n`);
    this.streams.add(res);
    res.on('close', () => this.streams.delete(res));
  }
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function sendText(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendText(res, status, 'application/json', `${JSON.stringify(body)}\n`);
}
