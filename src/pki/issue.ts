import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConflictError, UsageError } from '../errors.js';
import { ecKeyArgs, loadCa } from './ca.js';
import { certificateInfo, parseCertificate, shortIp } from './certificate-info.js';
import { CLIENT_EXTENSIONS, LEAF_EXTENSIONS, opensslConfig, subjectAltNames } from './extensions.js';
import { CERT_MODE, KEY_MODE, PRIVATE_DIR_MODE, exists, publishFile, withScratchDir } from './files.js';
import { IDENTITY_FILES } from './identity.js';
import { validateCertName, validateDays, validateDnsName, validateIpAddress } from './names.js';
import { type OpensslRunner, runOpenssl } from './openssl.js';
import { type Role, validateRole } from './roles.js';

export interface IssueOptions {
  /** CN of the certificate, also its first DNS subjectAltName and its directory name. */
  name: string;
  /** What the certificate may do (its subject OU): host, operator, viewer or metrics. */
  role: Role;
  ips?: readonly string[];
  dnsNames?: readonly string[];
  /** Where to write ca.pem, cert.pem and key.pem; default `<caDir>/issued/<name>`. */
  outDir?: string;
  /** Validity in days; default 825. Must end before the CA does. */
  days?: number;
  /** Replace an identity already issued in `outDir`. */
  force?: boolean;
  now?: Date;
  openssl?: OpensslRunner;
}

/** A certificate vmferry issued, where its files are, and what it names. */
export interface IssuedIdentity {
  name: string;
  role: Role;
  dir: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  dnsNames: string[];
  ips: string[];
  serialNumber: string;
  notAfter: Date;
}

export const DEFAULT_LEAF_DAYS = 825;
export const ISSUED_DIR = 'issued';

/** The directory `issue` writes to when no outDir is given. */
export function issuedIdentityDir(caDir: string, name: string): string {
  return join(resolve(caDir), ISSUED_DIR, name);
}

/** A random positive 159-bit serial (RFC 5280 allows up to 20 octets). */
function randomSerial(): string {
  const bytes = randomBytes(20);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return `0x${bytes.toString('hex')}`;
}

/** `openssl req` arguments that make a leaf certificate for `name`, signed by the CA. */
function signLeafArgs(a: {
  name: string;
  role: Role;
  key: string;
  cert: string;
  config: string;
  days: number;
  caCert: string;
  caKey: string;
}): string[] {
  return [
    'req',
    '-x509',
    '-new',
    '-key',
    a.key,
    '-subj',
    `/OU=${a.role}/CN=${a.name}`,
    '-CA',
    a.caCert,
    '-CAkey',
    a.caKey,
    '-set_serial',
    randomSerial(),
    '-days',
    String(a.days),
    '-sha256',
    '-config',
    a.config,
    '-extensions',
    a.role === 'host' ? LEAF_EXTENSIONS : CLIENT_EXTENSIONS,
    '-out',
    a.cert,
  ];
}

/**
 * Issues a certificate signed by the CA in `caDir` for mutual TLS between
 * vmferry agents and operators: ECDSA P-256 key, subject OU=role, CN=name,
 * subjectAltNames DNS:name plus the given DNS names and IPs, extendedKeyUsage
 * serverAuth and clientAuth for a host, clientAuth alone otherwise. Writes `cert.pem`, `key.pem` (0600) and a copy of the CA as
 * `ca.pem`, which together are a directory {@link loadTlsIdentity} reads.
 */
export async function issueCertificate(caDir: string, options: IssueOptions): Promise<IssuedIdentity> {
  const name = validateCertName(options.name);
  const role = validateRole(options.role);
  const dnsNames = (options.dnsNames ?? []).map(validateDnsName);
  const ips = (options.ips ?? []).map((ip) => shortIp(validateIpAddress(ip)));
  const days = validateDays(options.days ?? DEFAULT_LEAF_DAYS);
  const now = options.now ?? new Date();
  const openssl = options.openssl ?? runOpenssl;

  const ca = await loadCa(caDir, now);
  const caNotAfter = certificateInfo(ca.cert).notAfter;
  const notAfter = new Date(now.getTime() + days * 86_400_000);
  if (notAfter > caNotAfter) {
    throw new UsageError(
      `invalid days '${days}': the certificate would outlive the CA, which expires ${caNotAfter.toISOString()}`,
      { hint: `use at most ${Math.floor((caNotAfter.getTime() - now.getTime()) / 86_400_000)} days` },
    );
  }

  const dir = resolve(options.outDir ?? issuedIdentityDir(caDir, name));
  const out = {
    certPath: join(dir, IDENTITY_FILES.cert),
    keyPath: join(dir, IDENTITY_FILES.key),
    caPath: join(dir, IDENTITY_FILES.ca),
  };
  if (options.force !== true) {
    for (const file of [out.certPath, out.keyPath]) {
      if (await exists(file)) {
        throw new ConflictError(`a certificate was already issued there: ${file} is present`, {
          hint: 'pass --force to replace it, or --out to write somewhere else',
        });
      }
    }
  }
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });

  const issued = await withScratchDir(dir, async (scratch) => {
    const key = join(scratch, 'key.pem');
    const cert = join(scratch, 'cert.pem');
    const config = join(scratch, 'openssl.cnf');
    await writeFile(config, opensslConfig(subjectAltNames(name, dnsNames, ips)), { mode: KEY_MODE });
    await openssl(ecKeyArgs(key));
    await openssl(
      signLeafArgs({ name, role, key, cert, config, days, caCert: ca.certPath, caKey: ca.keyPath }),
    );
    const certPem = await readFile(cert);
    const exclusive = options.force !== true;
    await publishFile(out.keyPath, await readFile(key), KEY_MODE, { exclusive });
    await publishFile(out.certPath, certPem, CERT_MODE, { exclusive });
    await publishFile(out.caPath, ca.certPem, CERT_MODE, { exclusive: false });
    // A new identity starts with the CA's current revocation list, if it has one.
    const crlPath = join(ca.dir, IDENTITY_FILES.crl);
    if (await exists(crlPath))
      await publishFile(join(dir, IDENTITY_FILES.crl), await readFile(crlPath), CERT_MODE, {
        exclusive: false,
      });
    return certificateInfo(parseCertificate(certPem, out.certPath));
  });

  return {
    name,
    role,
    dir,
    ...out,
    dnsNames: issued.dnsNames,
    ips: issued.ips,
    serialNumber: issued.serialNumber,
    notAfter: issued.notAfter,
  };
}
