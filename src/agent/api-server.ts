import { chmodSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { InternalError, NotFoundError, UsageError, VmferryError, describeError } from '../errors.js';
import { PEER_CN_HEADER } from '../transport/index.js';
import { routeOf } from './api-client.js';

/** Who is calling, from their client certificate (already verified against the deployment CA). */
export interface Peer {
  commonName: string;
}

export interface ApiRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  peer: Peer;
}

export type ApiHandler = (req: ApiRequest) => Promise<unknown>;

interface Route {
  method: string;
  pattern: RegExp;
  names: string[];
  handler: ApiHandler;
}

/** A reply with an explicit status (201, 202...); plain values are sent as 200. */
export class Reply {
  constructor(
    readonly status: number,
    readonly body: unknown,
    /** Set for a body that is not JSON (the Prometheus text at /metrics): sent as it is. */
    readonly contentType?: string,
  ) {}
}

const MAX_BODY_BYTES = 1024 * 1024;

/**
 * The agent's control API: plain HTTP on a unix socket only the agent's TLS
 * front door (src/transport) can reach. The front door terminates mutual TLS
 * (a client without a certificate from the deployment CA never gets here) and
 * names the caller in a header it sets itself. Errors are answered as
 * `{code, message, hint}` with the status of their code (errors.ts).
 */
export class ApiServer {
  private readonly routes: Route[] = [];
  private server: Server | undefined;

  /** Serves `endpoint` (`METHOD /path/:param`, as in api-client.ts's API table) with `handler`. */
  route(endpoint: `${'GET' | 'POST'} /${string}`, handler: ApiHandler): this {
    const { method, path } = routeOf(endpoint);
    const names: string[] = [];
    const source = path.replace(/:([A-Za-z]+)/g, (_m, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    this.routes.push({ method, pattern: new RegExp(`^${source}$`), names, handler });
    return this;
  }

  /** Listens on a unix socket (mode 0600). */
  async listen(path: string): Promise<void> {
    rmSync(path, { force: true });
    const server = createServer((req, res) => void this.handle(req, res));
    // Only the front door's workers connect here; they keep connections open, and an idle
    // connection closed by this side races their next request. Keep them for a day.
    server.keepAliveTimeout = 24 * 3600 * 1000;
    server.requestTimeout = 0;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://agent');
      const method = req.method ?? 'GET';
      let route: Route | undefined;
      let match: RegExpExecArray | null = null;
      let pathKnown = false;
      for (const r of this.routes) {
        const m = r.pattern.exec(url.pathname);
        if (m === null) continue;
        pathKnown = true;
        if (r.method === method) {
          route = r;
          match = m;
          break;
        }
      }
      if (route === undefined || match === null) {
        throw pathKnown
          ? new UsageError(`${method} is not allowed on ${url.pathname}`)
          : new NotFoundError(`no API endpoint ${method} ${url.pathname}`);
      }
      const params: Record<string, string> = {};
      route.names.forEach((name, i) => (params[name] = decodeURIComponent(match[i + 1] ?? '')));
      const body = await readJsonBody(req);
      const cn = req.headers[PEER_CN_HEADER];
      const result = await route.handler({
        method,
        path: url.pathname,
        params,
        query: url.searchParams,
        body,
        peer: { commonName: typeof cn === 'string' ? cn : '' },
      });
      if (result instanceof Reply && result.contentType !== undefined)
        sendText(res, result.status, result.contentType, String(result.body));
      else if (result instanceof Reply) send(res, result.status, result.body);
      else send(res, 200, result ?? {});
    } catch (err) {
      const e =
        err instanceof VmferryError
          ? err
          : new InternalError(`internal error: ${describeError(err)}`, { cause: err });
      send(res, e.httpStatus, e.toJSON());
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  sendText(res, status, 'application/json', `${JSON.stringify(body)}\n`);
}

function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new UsageError(`request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UsageError('request body is not valid JSON');
  }
}
