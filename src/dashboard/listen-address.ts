import { isIP } from 'node:net';
import { UsageError } from '../errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * `HOST:PORT` for the dashboard, which has no login of its own: anyone who can
 * reach it acts with the operator's certificate, so only loopback is accepted.
 */
export function parseDashboardListen(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (m === null || host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new UsageError(`--listen must be HOST:PORT, got ${JSON.stringify(text)}`, {
      hint: 'for example --listen 127.0.0.1:8080',
    });
  }
  if (!isLoopback(host)) {
    throw new UsageError(
      `the dashboard listens on loopback only, not on ${host}: it acts with your certificate and has no login of its own`,
      { hint: 'use --listen 127.0.0.1:PORT and reach it from elsewhere through an SSH tunnel (ssh -L)' },
    );
  }
  return { host, port };
}
