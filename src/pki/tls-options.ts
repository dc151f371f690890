import { type PeerCertificate, checkServerIdentity } from 'node:tls';
import type { TlsIdentity } from './identity.js';

/**
 * Options for a mutual-TLS server (`tls.createServer`, `https.createServer`):
 * only clients presenting a certificate signed by our CA complete the
 * handshake; the system's root CAs are not trusted.
 */
export interface MtlsServerOptions {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  crl?: Buffer;
  requestCert: true;
  rejectUnauthorized: true;
  minVersion: 'TLSv1.3';
}

/** Options for a mutual-TLS client (`tls.connect`, `https.request`, `new https.Agent`). */
export interface MtlsClientOptions {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  crl?: Buffer;
  rejectUnauthorized: true;
  minVersion: 'TLSv1.3';
  servername?: string;
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
}

export function mtlsServerOptions(identity: TlsIdentity): MtlsServerOptions {
  return {
    ca: identity.ca,
    cert: identity.cert,
    key: identity.key,
    ...(identity.crl !== undefined ? { crl: identity.crl } : {}),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  };
}

/**
 * Client options. By default the server's certificate must name the host
 * connected to (DNS or IP subjectAltName). With `peerName`, it must name
 * `peerName` instead, whatever address was dialled: agents reach peers by
 * address but know them by name (the CN and first DNS name of their certificate).
 */
export function mtlsClientOptions(
  identity: TlsIdentity,
  { peerName }: { peerName?: string } = {},
): MtlsClientOptions {
  const options: MtlsClientOptions = {
    ca: identity.ca,
    cert: identity.cert,
    key: identity.key,
    ...(identity.crl !== undefined ? { crl: identity.crl } : {}),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    checkServerIdentity: (host, cert) => checkServerIdentity(peerName ?? host, cert),
  };
  if (peerName !== undefined) options.servername = peerName;
  return options;
}
