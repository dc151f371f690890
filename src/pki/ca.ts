import { X509Certificate } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CertificateError, ConflictError, NotFoundError } from '../errors.js';
import { certificateInfo, parseCertificate } from './certificate-info.js';
import { CA_EXTENSIONS, opensslConfig } from './extensions.js';
import { CERT_MODE, KEY_MODE, exists, publishFile, withScratchDir } from './files.js';
import { validateDays } from './names.js';
import { type OpensslRunner, runOpenssl } from './openssl.js';

/** File names inside a CA directory. */
export const CA_FILES = { cert: 'ca.pem', key: 'ca-key.pem' } as const;

/** Where a CA keeps its certificate and key. */
export interface CaPaths {
  dir: string;
  certPath: string;
  keyPath: string;
}

export interface InitCaOptions {
  /** Validity in days; default 3650 (about ten years). */
  days?: number;
  commonName?: string;
  openssl?: OpensslRunner;
}

export const DEFAULT_CA_DAYS = 3650;

export function caPaths(dir: string): CaPaths {
  const abs = resolve(dir);
  return { dir: abs, certPath: join(abs, CA_FILES.cert), keyPath: join(abs, CA_FILES.key) };
}

/** Arguments for an ECDSA P-256 private key (PKCS#8 PEM, which GnuTLS 3.7 and QEMU 7.2 load). */
export function ecKeyArgs(out: string): string[] {
  return ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out];
}

/**
 * Creates a CA in `dir`: an ECDSA P-256 key (ca-key.pem, mode 0600) and a
 * self-signed certificate (ca.pem) with basicConstraints CA:TRUE and keyUsage
 * keyCertSign,cRLSign, both critical. Refuses to replace an existing CA.
 */
export async function initCa(dir: string, options: InitCaOptions = {}): Promise<CaPaths> {
  const days = validateDays(options.days ?? DEFAULT_CA_DAYS);
  const commonName = options.commonName ?? 'vmferry CA';
  const openssl = options.openssl ?? runOpenssl;
  const paths = caPaths(dir);
  for (const file of [paths.keyPath, paths.certPath]) {
    if (await exists(file)) {
      throw new ConflictError(`a CA already exists: ${file} is present`, {
        hint: 'vmferry never overwrites a CA; choose another directory or remove the old CA deliberately',
      });
    }
  }
  await withScratchDir(paths.dir, async (scratch) => {
    const key = join(scratch, 'key.pem');
    const cert = join(scratch, 'cert.pem');
    const config = join(scratch, 'openssl.cnf');
    await writeFile(config, opensslConfig([]), { mode: KEY_MODE });
    await openssl(ecKeyArgs(key));
    await openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      key,
      '-subj',
      `/CN=${commonName}`,
      '-days',
      String(days),
      '-sha256',
      '-config',
      config,
      '-extensions',
      CA_EXTENSIONS,
      '-out',
      cert,
    ]);
    await publishCaFiles(paths, await readFile(key), await readFile(cert));
  });
  return paths;
}

async function publishCaFiles(paths: CaPaths, key: Buffer, cert: Buffer): Promise<void> {
  try {
    await publishFile(paths.keyPath, key, KEY_MODE, { exclusive: true });
  } catch (err) {
    throw conflictOrRethrow(err, paths.keyPath);
  }
  try {
    await publishFile(paths.certPath, cert, CERT_MODE, { exclusive: true });
  } catch (err) {
    // Another `ca init` raced us; leave its files alone, take back our key.
    await rm(paths.keyPath, { force: true });
    throw conflictOrRethrow(err, paths.certPath);
  }
}

function conflictOrRethrow(err: unknown, file: string): unknown {
  if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
    return new ConflictError(`a CA already exists: ${file} is present`, { cause: err });
  }
  return err;
}

/** A CA loaded for signing: its paths and parsed certificate. */
export interface LoadedCa extends CaPaths {
  cert: X509Certificate;
  certPem: Buffer;
}

/** Loads the CA in `dir`, checking that it is a CA certificate valid at `now`. */
export async function loadCa(dir: string, now: Date = new Date()): Promise<LoadedCa> {
  const paths = caPaths(dir);
  for (const file of [paths.certPath, paths.keyPath]) {
    if (!(await exists(file))) {
      throw new NotFoundError(`no CA in ${paths.dir}: ${file} is missing`, {
        hint: `create one with: vmferry ca init ${dir}`,
      });
    }
  }
  const certPem = await readFile(paths.certPath);
  const cert = parseCertificate(certPem, paths.certPath);
  const info = certificateInfo(cert);
  if (!info.isCa) {
    throw new CertificateError(
      `${paths.certPath} is not a CA certificate (basicConstraints CA:TRUE missing)`,
      {
        file: paths.certPath,
      },
    );
  }
  if (now < info.notBefore || now > info.notAfter) {
    throw new CertificateError(
      `the CA certificate ${paths.certPath} is valid only from ${info.notBefore.toISOString()} to ${info.notAfter.toISOString()}`,
      { file: paths.certPath, hint: 'check the clock, or create a new CA and reissue every certificate' },
    );
  }
  return { ...paths, cert, certPem };
}
