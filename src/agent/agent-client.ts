import { Agent as HttpsAgent, request } from 'node:https';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { PeerError, UsageError, errorFromBody, describeError } from '../errors.js';
import type { PeerCertificate } from 'node:tls';
import { commonNameOf, mtlsClientOptions, roleOf, type TlsIdentity } from '../pki/index.js';

/** Where an agent listens: `https://HOST:PORT` or `unix:/path/to/agent.sock`. */
export interface AgentEndpoint {
  url: string;
  host?: string;
  port?: number;
  socketPath?: string;
}

export function parseAgentEndpoint(text: string): AgentEndpoint {
  if (text.startsWith('unix:')) {
    const socketPath = text.slice('unix:'.length);
    if (!socketPath.startsWith('/'))
      throw new UsageError(`agent address ${text}: a unix socket path must be absolute`);
    return { url: text, socketPath };
  }
  let url: URL;
  try {
    url = new URL(text.includes('://') ? text : `https://${text}`);
  } catch {
    throw new UsageError(`invalid agent address ${JSON.stringify(text)}`, {
      hint: 'use https://HOST:PORT or unix:/path/to/agent.sock',
    });
  }
  if (url.protocol !== 'https:') throw new UsageError(`agent address ${text}: only https:// is supported`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { url: `https://${url.host}`, host, port: Number(url.port || 443) };
}

class StaleConnectionError extends Error {}

/**
 * Talks to an agent's HTTPS API with this side's certificate (mutual TLS). Used by
 * the CLI and by agents talking to their peers. Error replies become typed errors.
 */
export class AgentClient {
  readonly endpoint: AgentEndpoint;
  private readonly agent: HttpsAgent;
  private serverName: string | undefined;

  /**
   * `peerName`: the name the agent's certificate must carry (default: the address
   * dialled). Whatever the address, the certificate must be a host's (`OU=host`):
   * an operator's certificate cannot pose as an agent.
   */
  constructor(endpoint: AgentEndpoint | string, tls: TlsIdentity, options: { peerName?: string } = {}) {
    this.endpoint = typeof endpoint === 'string' ? parseAgentEndpoint(endpoint) : endpoint;
    const tlsOptions = mtlsClientOptions(tls, options);
    // Over a local unix socket there is no address to check; the chain to our CA and the role still are.
    const checkNames =
      this.endpoint.socketPath !== undefined && options.peerName === undefined
        ? () => undefined
        : tlsOptions.checkServerIdentity;
    this.agent = new HttpsAgent({
      keepAlive: true,
      ...tlsOptions,
      checkServerIdentity: (host: string, cert: PeerCertificate) => {
        const wrongName = checkNames(host, cert);
        if (wrongName !== undefined) return wrongName;
        const role = roleOf(cert.subject);
        const name = commonNameOf(cert.subject);
        if (role !== 'host') {
          return new Error(
            `${this.endpoint.url} presents the certificate of ${JSON.stringify(name)} with ${role === undefined ? 'no role' : `role ${role}`}, not an agent's (role host)`,
          );
        }
        this.serverName = name;
        return undefined;
      },
    });
  }

  /** The name in the agent's certificate, as verified on the last connection (undefined before one). */
  get verifiedName(): string | undefined {
    return this.serverName;
  }

  get<T>(path: string, options: { timeoutMs?: number } = {}): Promise<T> {
    return this.call<T>('GET', path, undefined, options.timeoutMs);
  }

  post<T>(path: string, body: unknown = {}, options: { timeoutMs?: number } = {}): Promise<T> {
    return this.call<T>('POST', path, body, options.timeoutMs);
  }

  delete<T>(path: string, options: { timeoutMs?: number } = {}): Promise<T> {
    return this.call<T>('DELETE', path, undefined, options.timeoutMs);
  }

  close(): void {
    this.agent.destroy();
  }

  private async call<T>(method: string, path: string, body: unknown, timeoutMs = 30_000): Promise<T> {
    try {
      return await this.attempt<T>(method, path, body, timeoutMs);
    } catch (err) {
      // A kept-alive connection the server closed while idle fails before the request is read:
      // sending again on a fresh connection is safe (Node's documented pattern, reusedSocket).
      if (err instanceof StaleConnectionError) return this.attempt<T>(method, path, body, timeoutMs);
      throw err;
    }
  }

  private attempt<T>(method: string, path: string, body: unknown, timeoutMs: number): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      let req: ClientRequest;
      try {
        req = request({
          method,
          path,
          agent: this.agent,
          headers: {
            accept: 'application/json',
            ...(payload !== undefined
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
              : {}),
          },
          ...(this.endpoint.socketPath !== undefined
            ? { socketPath: this.endpoint.socketPath }
            : { host: this.endpoint.host, port: this.endpoint.port }),
        });
      } catch (err) {
        reject(
          new PeerError(`cannot call agent ${this.endpoint.url}: ${describeError(err)}`, {
            cause: err,
            notDelivered: true,
          }),
        );
        return;
      }
      // Until the TLS session is up, the request cannot have been read by the agent.
      let connected = false;
      req.on('socket', (socket) => {
        if (req.reusedSocket) connected = true;
        else socket.once('secureConnect', () => (connected = true));
      });
      req.setTimeout(timeoutMs, () =>
        req.destroy(
          new PeerError(
            `agent ${this.endpoint.url} did not answer ${method} ${path} within ${timeoutMs} ms`,
            {
              notDelivered: !connected,
            },
          ),
        ),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          reject(new StaleConnectionError());
          return;
        }
        if (err instanceof PeerError) reject(err);
        else
          reject(
            new PeerError(`cannot reach agent ${this.endpoint.url}: ${describeError(err)}`, {
              cause: err,
              notDelivered: !connected,
              hint: 'check that the agent runs, its address, and that your certificate is signed by the deployment CA',
            }),
          );
      });
      req.on('response', (res: IncomingMessage) => {
        this.readReply<T>(res, `${method} ${path}`).then(resolve, reject);
      });
      req.end(payload);
    });
  }

  /** The reply's JSON body, or the typed error an error status carries. */
  private readReply<T>(res: IncomingMessage, request: string): Promise<T> {
    const { url } = this.endpoint;
    return new Promise<T>((resolve, reject) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new PeerError(`agent ${url}: ${describeError(err)}`)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text.length > 0 ? JSON.parse(text) : undefined;
        } catch {
          reject(
            new PeerError(`agent ${url} answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`),
          );
          return;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) resolve(parsed as T);
        else reject(errorFromBody(parsed, `agent ${url} answered ${status} to ${request}`));
      });
    });
  }
}
