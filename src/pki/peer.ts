import type { TLSSocket } from 'node:tls';
import { AuthError } from '../errors.js';
import { parseSubjectAltName } from './certificate-info.js';

/** Who is at the other end of an authenticated TLS connection. */
export interface PeerIdentity {
  /** The certificate's CN: the name it was issued to with `vmferry ca issue --name`. */
  commonName: string;
  dnsNames: string[];
  ips: string[];
  serialNumber: string;
  fingerprint256: string;
}

/**
 * The identity of the peer of `socket`, or undefined when the peer sent no
 * certificate or it did not verify against our CA. Read it only after the
 * handshake (in 'secureConnection', or from an HTTPS request's socket).
 */
export function peerIdentity(socket: TLSSocket): PeerIdentity | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerCertificate(false);
  if (cert === null || typeof cert !== 'object' || Object.keys(cert).length === 0) return undefined;
  // Several CNs would be ambiguous for authorization; our CA never issues that, so it names nobody.
  const cn: unknown = cert.subject?.CN;
  const commonName = typeof cn === 'string' ? cn : '';
  const sans = parseSubjectAltName(cert.subjectaltname ?? '');
  return {
    commonName,
    dnsNames: sans.dnsNames,
    ips: sans.ips,
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
  };
}

/**
 * The peer's identity, or an AuthError when it has none; with `allowedNames`,
 * also when its CN is not one of them.
 */
export function requirePeer(socket: TLSSocket, allowedNames?: readonly string[]): PeerIdentity {
  const peer = peerIdentity(socket);
  if (peer === undefined) {
    const why =
      socket.authorizationError === undefined ? 'no client certificate' : String(socket.authorizationError);
    throw new AuthError(`peer not authenticated: ${why}`, {
      hint: "connect with a certificate issued by this deployment's CA (vmferry ca issue)",
    });
  }
  if (allowedNames !== undefined && !allowedNames.includes(peer.commonName)) {
    throw new AuthError(
      `peer '${peer.commonName}' is not allowed here (expected ${allowedNames.join(' or ') || 'nobody'})`,
    );
  }
  return peer;
}
