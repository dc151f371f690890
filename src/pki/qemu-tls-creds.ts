import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CERT_MODE, KEY_MODE, PRIVATE_DIR_MODE, publishFile } from './files.js';
import type { TlsIdentity } from './identity.js';
import type { Role } from './roles.js';

/**
 * The file names QEMU's tls-creds-x509 object looks for in its `dir`
 * (crypto/tlscredsx509.h). An endpoint=server object needs ca-cert,
 * server-cert and server-key; endpoint=client needs ca-cert and uses
 * client-cert/client-key when present (required by a verify-peer=on server).
 */
export const QEMU_TLS_FILES = {
  caCert: 'ca-cert.pem',
  serverCert: 'server-cert.pem',
  serverKey: 'server-key.pem',
  clientCert: 'client-cert.pem',
  clientKey: 'client-key.pem',
} as const;

export type QemuTlsFile = keyof typeof QEMU_TLS_FILES;

/** The CA's revocation list, which tls-creds-x509 loads when present (optional). */
export const QEMU_CRL_FILE = 'ca-crl.pem';

export interface QemuTlsCredsDir {
  dir: string;
  files: Record<QemuTlsFile, string>;
}

/**
 * Lays out a QEMU tls-creds-x509 directory from a vmferry identity: the same
 * certificate and key serve as both server and client credentials (vmferry
 * certificates carry serverAuth and clientAuth), so one directory works for
 * the migration source (endpoint=client) and destination (endpoint=server).
 * Keys are 0600, the directory 0700. Existing files are replaced atomically.
 *
 * Checked with QEMU 7.2 / GnuTLS 3.7: PKCS#8 ECDSA P-256 keys load; the
 * source QEMU checks the destination's certificate against `tls-hostname`
 * (or the host of the migration URI), so pass the peer's certificate name as
 * `tls-hostname` when migrating to an address.
 */
export async function writeQemuTlsCredsDir(dir: string, identity: TlsIdentity): Promise<QemuTlsCredsDir> {
  const abs = resolve(dir);
  await mkdir(abs, { recursive: true, mode: PRIVATE_DIR_MODE });
  const files = Object.fromEntries(
    Object.entries(QEMU_TLS_FILES).map(([k, f]) => [k, join(abs, f)]),
  ) as Record<QemuTlsFile, string>;
  const contents: [string, Buffer, number][] = [
    [files.caCert, identity.ca, CERT_MODE],
    [files.serverCert, identity.cert, CERT_MODE],
    [files.serverKey, identity.key, KEY_MODE],
    [files.clientCert, identity.cert, CERT_MODE],
    [files.clientKey, identity.key, KEY_MODE],
  ];
  for (const [path, data, mode] of contents) await publishFile(path, data, mode, { exclusive: false });
  // QEMU loads the CA's revocation list from ca-crl.pem when it is there.
  const crlPath = join(abs, QEMU_CRL_FILE);
  if (identity.crl !== undefined) await publishFile(crlPath, identity.crl, CERT_MODE, { exclusive: false });
  else await rm(crlPath, { force: true });
  return { dir: abs, files };
}

/** QMP `object-add` arguments for a tls-creds-x509 object over `dir`. */
export function qemuTlsCredsObject(
  id: string,
  dir: string,
  endpoint: 'server' | 'client',
): {
  'qom-type': 'tls-creds-x509';
  id: string;
  dir: string;
  endpoint: 'server' | 'client';
  'verify-peer': true;
} {
  return { 'qom-type': 'tls-creds-x509', id, dir: resolve(dir), endpoint, 'verify-peer': true };
}

/** The same object as a QEMU `-object` command-line value (commas in the path doubled, as QemuOpts needs). */
export function qemuTlsCredsArg(id: string, dir: string, endpoint: 'server' | 'client'): string {
  return `tls-creds-x509,id=${id},dir=${resolve(dir).replaceAll(',', ',,')},endpoint=${endpoint},verify-peer=on`;
}

/**
 * The distinguished names QEMU's `tls-authz` (an authz-list) compares a peer's
 * certificate with, for a vmferry host certificate (`/OU=host/CN=name`). QEMU 7.2
 * with GnuTLS 3.7 prints it "OU=host,CN=name" (measured); RFC 4514 order is the
 * reverse, which other GnuTLS versions print: both are listed, each names only that host.
 */
export function qemuPeerNames(commonName: string, role: Role): string[] {
  return [`OU=${role},CN=${commonName}`, `CN=${commonName},OU=${role}`];
}

/** QMP `object-add` arguments for an authz-list that lets only `names` (exact) in. */
export function qemuAuthzListObject(
  id: string,
  names: readonly string[],
): {
  'qom-type': 'authz-list';
  id: string;
  policy: 'deny';
  rules: { match: string; policy: 'allow'; format: 'exact' }[];
} {
  return {
    'qom-type': 'authz-list',
    id,
    policy: 'deny',
    rules: names.map((match) => ({ match, policy: 'allow', format: 'exact' })),
  };
}
