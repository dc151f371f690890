import { createPrivateKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CertificateError, NotFoundError } from '../errors.js';
import { type CertificateInfo, certificateInfo, parseCertificate } from './certificate-info.js';

/**
 * The files of a TLS identity directory, as `vmferry ca issue` writes them; `crl.pem`
 * (the CA's revocation list, from `vmferry ca revoke`) is optional.
 */
export const IDENTITY_FILES = { ca: 'ca.pem', cert: 'cert.pem', key: 'key.pem', crl: 'crl.pem' } as const;

/** A host's or operator's TLS identity: the CA it trusts, its certificate and its private key (PEM). */
export interface TlsIdentity {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Certificates the CA revoked (a PEM CRL): peers presenting one are refused. */
  crl?: Buffer;
}

/**
 * Reads `ca.pem`, `cert.pem` and `key.pem` from `dir` and checks them with
 * {@link checkTlsIdentity}, so a broken identity fails at start-up with the
 * file named, not later as an obscure handshake error.
 */
export async function loadTlsIdentity(
  dir: string,
  { now = new Date() }: { now?: Date } = {},
): Promise<TlsIdentity> {
  const abs = resolve(dir);
  const read = async (file: string): Promise<Buffer> => {
    const path = join(abs, file);
    try {
      return await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError(`TLS identity incomplete: ${path} is missing`, {
          hint: 'issue one with: vmferry ca issue CA_DIR --name NAME --role ROLE (it writes ca.pem, cert.pem, key.pem)',
          cause: err,
        });
      }
      throw new CertificateError(`cannot read ${path}: ${(err as Error).message}`, {
        file: path,
        cause: err,
      });
    }
  };
  const identity: TlsIdentity = {
    ca: await read(IDENTITY_FILES.ca),
    cert: await read(IDENTITY_FILES.cert),
    key: await read(IDENTITY_FILES.key),
  };
  const crlPath = join(abs, IDENTITY_FILES.crl);
  const crl = await readFile(crlPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new CertificateError(`cannot read ${crlPath}: ${err.message}`, { file: crlPath, cause: err });
  });
  if (crl !== undefined) {
    try {
      createSecureContext({ ca: identity.ca, crl });
    } catch (err) {
      throw new CertificateError(`${crlPath} is not a PEM certificate revocation list`, {
        file: crlPath,
        hint: 'copy crl.pem as vmferry ca revoke wrote it, or remove it',
        cause: err,
      });
    }
    identity.crl = crl;
  }
  checkTlsIdentity(identity, { now, source: abs });
  return identity;
}

/**
 * Checks that the certificate was signed by the CA, that the key belongs to
 * the certificate and that both certificates are valid at `now`; returns what
 * the certificate names.
 */
export function checkTlsIdentity(
  identity: TlsIdentity,
  { now = new Date(), source = 'TLS identity' }: { now?: Date; source?: string } = {},
): CertificateInfo {
  const caFile = join(source, IDENTITY_FILES.ca);
  const certFile = join(source, IDENTITY_FILES.cert);
  const keyFile = join(source, IDENTITY_FILES.key);
  const ca = parseCertificate(identity.ca, caFile);
  const cert = parseCertificate(identity.cert, certFile);
  let key;
  try {
    key = createPrivateKey(identity.key);
  } catch (err) {
    throw new CertificateError(`${keyFile} is not a PEM private key`, { file: keyFile, cause: err });
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new CertificateError(`${certFile} was not signed by the CA in ${caFile}`, {
      file: certFile,
      hint: 'issue the certificate and copy ca.pem from the same vmferry CA',
    });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new CertificateError(`${keyFile} is not the private key of ${certFile}`, { file: keyFile });
  }
  for (const [file, c] of [
    [caFile, ca],
    [certFile, cert],
  ] as const) {
    const info = certificateInfo(c);
    if (now < info.notBefore || now > info.notAfter) {
      throw new CertificateError(
        `${file} is valid only from ${info.notBefore.toISOString()} to ${info.notAfter.toISOString()}`,
        { file, hint: 'check the clock, or issue a new certificate' },
      );
    }
  }
  return certificateInfo(cert);
}
