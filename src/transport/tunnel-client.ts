import { connect as tlsConnect, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import { AuthError, PeerError } from '../errors.js';
import type { TunnelRemote } from './ipc-protocol.js';
import { commonNameOf, roleOf } from '../pki/index.js';
import { parseUpgradeResponse, tunnelRequest } from './tunnel-policy.js';

export interface TunnelConnectOptions {
  remote: TunnelRemote;
  secureContext: SecureContext;
  migrationId: string;
  token: string;
  expectedPeerCommonName: string;
  timeoutMs: number;
  noDelay: boolean;
  highWaterMark?: number;
}

export interface TunnelConnection {
  socket: TLSSocket;
  /** Tunnel bytes that arrived with the 101 reply. */
  head: Buffer;
}

/** TLS to the destination agent: our CA, TLS 1.3, and the peer's certificate naming the expected agent. */
function connectOptions(options: TunnelConnectOptions): ConnectionOptions {
  const { remote } = options;
  // allowHalfOpen and highWaterMark are honoured by tls.connect but missing from @types/node.
  const tlsOptions: ConnectionOptions & { allowHalfOpen: boolean; highWaterMark?: number } = {
    ...('socketPath' in remote ? { path: remote.socketPath } : { host: remote.host, port: remote.port }),
    secureContext: options.secureContext,
    minVersion: 'TLSv1.3',
    allowHalfOpen: true,
    ...(options.highWaterMark !== undefined ? { highWaterMark: options.highWaterMark } : {}),
    checkServerIdentity: (_host, cert) => {
      const cn = commonNameOf(cert.subject);
      if (cn !== options.expectedPeerCommonName) {
        return new AuthError(
          `the remote agent is ${JSON.stringify(cn)}, not ${JSON.stringify(options.expectedPeerCommonName)}`,
        );
      }
      // Only an agent serves tunnels: a certificate of another role cannot pose as one.
      const role = roleOf(cert.subject);
      return role === 'host'
        ? undefined
        : new AuthError(
            `the remote agent ${JSON.stringify(cn)} has a ${role ?? 'role-less'} certificate, not a host's`,
          );
    },
  };
  return tlsOptions;
}

/**
 * Opens one tunnel connection to a destination agent: TLS (the peer must be
 * `expectedPeerCommonName`, signed by our CA), the upgrade request, the 101
 * reply. Resolves with the socket paused, ready to relay; rejects with
 * AuthError when the peer is not who it should be or refuses with 403, with
 * PeerError for any other failure.
 */
export function openTunnelConnection(
  options: TunnelConnectOptions,
  signal?: AbortSignal,
): Promise<TunnelConnection> {
  const { remote } = options;
  const socket = tlsConnect(connectOptions(options));
  const where = 'socketPath' in remote ? remote.socketPath : `${remote.host}:${remote.port}`;
  return new Promise<TunnelConnection>((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    const timer = setTimeout(
      () => fail(new PeerError(`no tunnel to ${where} within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.off('end', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    function fail(err: Error): void {
      cleanup();
      socket.on('error', () => undefined);
      socket.destroy();
      reject(err);
    }
    function onError(err: Error): void {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      const text = `tunnel connection to ${where} failed: ${err.message}`;
      fail(
        err instanceof AuthError
          ? err
          : /ALERT|CERT|SIGNATURE/.test(code)
            ? new AuthError(text, {
                cause: err,
                hint: 'both agents need certificates from the same deployment CA',
              })
            : new PeerError(text, { cause: err }),
      );
    }
    function onClose(): void {
      fail(new PeerError(`${where} closed the tunnel connection before accepting it`));
    }
    function onAbort(): void {
      fail(new PeerError('tunnel connection aborted'));
    }
    function onData(chunk: Buffer): void {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const reply = parseUpgradeResponse(received);
      if (!reply.complete) return;
      if (reply.status !== 101) {
        const text = `${where} refused the tunnel: ${reply.status} ${reply.body.trim()}`;
        fail(reply.status === 403 ? new AuthError(text) : new PeerError(text));
        return;
      }
      socket.pause();
      cleanup();
      resolve({ socket, head: received.subarray(reply.headerBytes) });
    }
    if (signal?.aborted === true) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort);
    socket.on('error', onError);
    socket.on('close', onClose);
    // Half-open sockets report the peer's FIN as 'end' only: before the 101 it is a refusal too.
    socket.on('end', onClose);
    socket.on('data', onData);
    socket.once('secureConnect', () => {
      socket.setNoDelay(options.noDelay);
      const host = 'socketPath' in remote ? 'localhost' : `${remote.host}:${remote.port}`;
      socket.write(tunnelRequest(options.migrationId, options.token, host));
    });
  });
}
