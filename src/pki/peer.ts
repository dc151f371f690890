import type { TLSSocket } from 'node:tls';
import { commonNameOf, parseSubjectAltName } from './certificate-info.js';
import { roleOf, type Role } from './roles.js';

/** Who is at the other end of an authenticated TLS connection. */
export interface PeerIdentity {
  /** The certificate's CN: the name it was issued to with `vmferry ca issue --name`. */
  commonName: string;
  /** What it may do, from its subject OU (`vmferry ca issue --role`); undefined: no role. */
  role: Role | undefined;
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
  const commonName = commonNameOf(cert.subject);
  const sans = parseSubjectAltName(cert.subjectaltname ?? '');
  return {
    commonName,
    role: roleOf(cert.subject),
    dnsNames: sans.dnsNames,
    ips: sans.ips,
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
  };
}
