import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { UsageError, VmferryError, describeError, httpStatusFor, NotFoundError } from '../errors.js';
import { mtlsServerOptions, type TlsIdentity } from '../pki/index.js';

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

/** Takes over an upgraded connection (the tunnel); headers already read. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, peer: Peer) => void;

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
  ) {}
}

const MAX_BODY_BYTES = 1024 * 1024;

/**
 * The agent's HTTPS API. Mutual TLS: a client without a certificate signed by
 * the deployment CA fails the handshake and never reaches a handler. Errors are
 * answered as `{code, message, hint}` with the status from errors.ts.
 */
export class ApiServer {
  private readonly routes: Route[] = [];
  private readonly upgrades = new Map<string, UpgradeHandler>();
  private readonly servers: Server[] = [];
  private readonly tls: TlsIdentity;

  constructor(tls: TlsIdentity) {
    this.tls = tls;
  }

  route(method: string, path: string, handler: ApiHandler): this {
    const names: string[] = [];
    const source = path.replace(/:([A-Za-z]+)/g, (_m, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    this.routes.push({ method, pattern: new RegExp(`^${source}$`), names, handler });
    return this;
  }

  /** Registers a handler for `Upgrade: <protocol>` requests. */
  upgrade(protocol: string, handler: UpgradeHandler): this {
    this.upgrades.set(protocol, handler);
    return this;
  }

  /** Listens on `host:port` (TCP) or a unix socket path; resolves with the bound address. */
  listen(target: { host: string; port: number } | { path: string }): Promise<string> {
    const server = createServer(mtlsServerOptions(this.tls), (req, res) => void this.handle(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.handleUpgrade(req, socket, head),
    );
    server.on('tlsClientError', () => undefined);
    server.keepAliveTimeout = 5000;
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        server.off('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'string' ? addr : addr === null ? '' : `${addr.address}:${addr.port}`);
      };
      if ('path' in target) server.listen(target.path, done);
      else server.listen(target.port, target.host, done);
    });
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    this.servers.length = 0;
  }

  private peerOf(req: IncomingMessage): Peer {
    const cert = (req.socket as TLSSocket).getPeerCertificate();
    const cn = cert.subject?.CN;
    return { commonName: typeof cn === 'string' ? cn : Array.isArray(cn) ? (cn[0] ?? '') : '' };
  }

  private handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const protocol = (req.headers.upgrade ?? '').toLowerCase();
    const handler = this.upgrades.get(protocol);
    if (handler === undefined) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    handler(req, socket, head, this.peerOf(req));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'https://agent');
      const method = req.method ?? 'GET';
      let route: Route | undefined;
      let match: RegExpExecArray | null = null;
      let pathKnown = false;
      for (const r of this.routes) {
        match = r.pattern.exec(url.pathname);
        if (match === null) continue;
        pathKnown = true;
        if (r.method === method) {
          route = r;
          break;
        }
      }
      if (route === undefined || match === null) {
        throw pathKnown
          ? new VmferryError('VMF_ERR_USAGE', `${method} is not allowed on ${url.pathname}`)
          : new NotFoundError(`no API endpoint ${method} ${url.pathname}`);
      }
      const params: Record<string, string> = {};
      route.names.forEach((name, i) => (params[name] = decodeURIComponent(match[i + 1] ?? '')));
      const body = await readJsonBody(req);
      const result = await route.handler({
        method,
        path: url.pathname,
        params,
        query: url.searchParams,
        body,
        peer: this.peerOf(req),
      });
      if (result instanceof Reply) send(res, result.status, result.body);
      else send(res, 200, result ?? {});
    } catch (err) {
      const e =
        err instanceof VmferryError
          ? err
          : new VmferryError('VMF_ERR_INTERNAL', `internal error: ${describeError(err)}`);
      send(res, httpStatusFor(e.code), e.toJSON());
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
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
