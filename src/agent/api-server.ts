import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type InjectOptions,
  type LightMyRequestResponse,
} from 'fastify';
import {
  AuthError,
  InternalError,
  NotFoundError,
  UsageError,
  VmferryError,
  describeError,
} from '../errors.js';
import { isRole, type Role } from '../pki/index.js';
import {
  INTERNAL_SECRET_HEADER,
  MAX_API_BODY_BYTES,
  PEER_CN_HEADER,
  PEER_ROLE_HEADER,
  listenPrivate,
} from '../transport/index.js';
import { routeOf } from './api-client.js';
import { API_SCHEMAS, ERROR_REPLY, type EndpointSchema } from './api-schemas.js';
import { accessRefusal } from './route-access.js';

/** Who is calling, from their client certificate (already verified against the deployment CA). */
export interface Peer {
  commonName: string;
  /** What the certificate may do (its OU); undefined when it names no role. */
  role: Role | undefined;
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

/** A reply with an explicit status (201, 202...); plain values are sent as 200. */
export class Reply {
  constructor(
    readonly status: number,
    readonly body: unknown,
    /** Set for a body that is not JSON (the Prometheus text at /metrics): sent as it is. */
    readonly contentType?: string,
  ) {}
}

export const MAX_BODY_BYTES = MAX_API_BODY_BYTES;
/** The longest path parameter (a VM name, a migration id) fastify routes. */
const MAX_PARAM_LENGTH = 100;

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** A schema refusal as a UsageError naming the part and the field. */
function validationError(err: FastifyError): UsageError {
  const where = err.validationContext ?? 'request';
  const details = ((err.validation ?? []) as AjvError[]).map((v) => {
    const at = `${where}${v.instancePath.replace(/\//g, '.')}`;
    if (v.keyword === 'additionalProperties')
      return `${at} has an unknown field ${JSON.stringify(v.params.additionalProperty)}`;
    return `${at} ${v.message ?? 'is invalid'}`;
  });
  return new UsageError(details.join('; ') || err.message, {
    hint: 'the agent API takes only the fields it documents (src/agent/api-schemas.ts)',
  });
}

/** Any error a request ends in, as the one error shape {code, message, hint?}. */
export function apiError(err: unknown): VmferryError {
  if (err instanceof VmferryError) return err;
  const e = err as Partial<FastifyError> | undefined;
  if (e?.validation !== undefined) return validationError(e as FastifyError);
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new UsageError(`request body larger than ${MAX_BODY_BYTES} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new UsageError('request body must be JSON (content-type: application/json)');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new UsageError('request body is empty: send {} when there is nothing to say');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new UsageError('request body is not valid JSON');
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_INVALID_URL':
      return new UsageError('the request path is not a valid URL (bad percent-encoding?)');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new UsageError(`a name or id in the request path is longer than ${MAX_PARAM_LENGTH} characters`);
  }
  if (err instanceof SyntaxError) return new UsageError('request body is not valid JSON');
  return new InternalError(`internal error: ${describeError(err)}`);
}

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** The caller as the front door named it from its verified certificate. */
function peerOf(headers: IncomingHttpHeaders): Peer {
  const cn = headers[PEER_CN_HEADER];
  const role = headers[PEER_ROLE_HEADER];
  return { commonName: typeof cn === 'string' ? cn : '', role: isRole(role) ? role : undefined };
}

function schemaOf(endpoint: string): EndpointSchema {
  const schema = API_SCHEMAS[endpoint];
  if (schema === undefined) throw new Error(`the API endpoint ${endpoint} has no schema in api-schemas.ts`);
  return schema;
}

/**
 * The agent's control API on fastify: plain HTTP on a unix socket only the
 * agent's TLS front door (src/transport) can reach. The front door terminates
 * mutual TLS (a client without a certificate from the deployment CA never gets
 * here) and names the caller (CN and role) in headers it sets itself, beside
 * the agent's per-start secret: a request without that secret is refused,
 * whoever can reach the socket. Each route lets in the roles the route table
 * (route-access.ts) gives it, checked before its body is read. Every body, query
 * and reply has a JSON schema (api-schemas.ts); errors are answered as
 * `{code, message, hint}` with the status of their code (errors.ts).
 */
export class ApiServer {
  private readonly app: FastifyInstance;
  private readonly paths: { method: string; pattern: RegExp }[] = [];
  private readonly served: string[] = [];
  private listening = false;

  /** `secret`: what the front door's workers send with every request (the agent makes one per start). */
  constructor(secret: string) {
    if (secret.length < 16) throw new UsageError('the internal API secret must have at least 16 characters');
    const secretDigest = digest(secret);
    this.app = Fastify({
      bodyLimit: MAX_BODY_BYTES,
      // Only the front door's workers connect here; they keep connections open, and an idle
      // connection closed by this side races their next request. Keep them for a day.
      keepAliveTimeout: 24 * 3600 * 1000,
      requestTimeout: 0,
      forceCloseConnections: true,
      logger: false,
      routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
      // Paths fastify cannot route (bad encoding, a name too long) get the one error shape too.
      frameworkErrors: (err, _request, reply) => {
        const e = apiError(err);
        void (reply as unknown as FastifyReply)
          .status(e.httpStatus)
          .type('application/json')
          .send(e.toJSON());
      },
      // Refuse unknown fields and wrong types instead of dropping or converting them.
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
    });
    this.app.addHook('onRequest', (request, _reply, done) => {
      const given = request.headers[INTERNAL_SECRET_HEADER];
      // Not the front door: a local process of this user. It learns nothing more.
      if (typeof given !== 'string' || !timingSafeEqual(digest(given), secretDigest))
        done(new AuthError("only the agent's TLS front door may call its internal API"));
      else done();
    });
    this.app.setErrorHandler((err, _request, reply) => {
      const e = apiError(err);
      void reply.status(e.httpStatus).type('application/json').send(e.toJSON());
    });
    this.app.setNotFoundHandler((request, reply) => {
      const path = new URL(request.url, 'http://agent').pathname;
      const e = this.paths.some((p) => p.pattern.test(path))
        ? new UsageError(`${request.method} is not allowed on ${path}`)
        : new NotFoundError(`no API endpoint ${request.method} ${path}`);
      void reply.status(e.httpStatus).type('application/json').send(e.toJSON());
    });
  }

  /** Serves `endpoint` (`METHOD /path/:param`, as in api-client.ts's API table) with `handler`. */
  route(endpoint: `${'GET' | 'POST'} /${string}`, handler: ApiHandler): this {
    const { method, path } = routeOf(endpoint);
    const schema = schemaOf(endpoint);
    this.paths.push({ method, pattern: new RegExp(`^${path.replace(/:[A-Za-z]+/g, '[^/]+')}$`) });
    this.served.push(endpoint);
    this.app.route({
      method,
      url: path,
      onRequest: (request, _reply, done) => {
        const refused = accessRefusal(peerOf(request.headers), endpoint);
        if (refused !== undefined) done(refused);
        else done();
      },
      schema: {
        ...(schema.body !== undefined ? { body: schema.body } : {}),
        ...(schema.querystring !== undefined ? { querystring: schema.querystring } : {}),
        ...(schema.params !== undefined ? { params: schema.params } : {}),
        response: {
          ...(schema.reply !== undefined ? { '2xx': schema.reply } : {}),
          '4xx': ERROR_REPLY,
          '5xx': ERROR_REPLY,
        },
      },
      handler: async (request, reply) => {
        const query = new URLSearchParams();
        for (const [k, v] of Object.entries((request.query ?? {}) as Record<string, unknown>))
          query.set(k, String(v));
        const result = await handler({
          method,
          path: new URL(request.url, 'http://agent').pathname,
          params: (request.params ?? {}) as Record<string, string>,
          query,
          body: request.body,
          peer: peerOf(request.headers),
        });
        if (!(result instanceof Reply)) return result ?? {};
        void reply.status(result.status);
        if (result.contentType !== undefined) void reply.type(result.contentType);
        return result.body;
      },
    });
    return this;
  }

  /** The endpoints served, as registered (`METHOD /path/:param`). */
  get endpoints(): string[] {
    return [...this.served];
  }

  /** Listens on a unix socket, mode 0600 from the moment it exists (fastify's own listen would chmod later). */
  async listen(path: string): Promise<void> {
    await this.app.ready();
    await listenPrivate(this.app.server, path);
    this.listening = true;
  }

  /** Answers one request without a socket (tests). */
  inject(options: InjectOptions): Promise<LightMyRequestResponse> {
    return this.app.inject(options);
  }

  async close(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const { server } = this.app;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    await this.app.close();
  }
}
