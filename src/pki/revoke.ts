import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertificateError, NotFoundError } from '../errors.js';
import { loadCa, type LoadedCa } from './ca.js';
import { certificateInfo, parseCertificate } from './certificate-info.js';
import { CERT_MODE, KEY_MODE, exists, publishFile, withScratchDir } from './files.js';
import { IDENTITY_FILES } from './identity.js';
import { ISSUED_DIR, issuedIdentityDir } from './issue.js';
import { validateCertName } from './names.js';
import { type OpensslRunner, runOpenssl } from './openssl.js';

/** The CA's record of what it revoked (`revoked.json`), from which every CRL is made. */
interface RevocationList {
  /** Number of the last CRL made; each new CRL gets the next one. */
  crlNumber: number;
  revoked: RevokedCertificate[];
}

export interface RevokedCertificate {
  /** Serial number, upper-case hex as OpenSSL prints it. */
  serial: string;
  subject: string;
  notAfter: string;
  revokedAt: string;
}

export interface RevokeOptions {
  /** Revoke the certificate issued under this name (`<caDir>/issued/<name>/cert.pem`)... */
  name?: string;
  /** ...or the certificate in this file. */
  certPath?: string;
  now?: Date;
  openssl?: OpensslRunner;
}

export interface RevokeResult {
  serial: string;
  subject: string;
  /** False when it had been revoked before (the CRL is made again anyway). */
  newlyRevoked: boolean;
  /** The CRL, and the identity directories under the CA it was copied into. */
  crlPath: string;
  copiedTo: string[];
  revokedCount: number;
}

const LIST_FILE = 'revoked.json';

/**
 * Revokes a certificate this CA issued: records it in `<caDir>/revoked.json`
 * and makes a new CRL (`<caDir>/crl.pem`, signed by the CA, valid as long as
 * the CA), also copied as `crl.pem` into every identity directory under
 * `<caDir>/issued/`. Agents load `crl.pem` from their TLS directory at start-up
 * and then refuse the revoked certificate, as client and as server; QEMU's TLS
 * gets it as `ca-crl.pem`. Copy the new `crl.pem` to every host and send the
 * agents SIGHUP (they reload their TLS directory; established connections keep
 * their session).
 */
export async function revokeCertificate(caDir: string, options: RevokeOptions): Promise<RevokeResult> {
  const now = options.now ?? new Date();
  const openssl = options.openssl ?? runOpenssl;
  const ca = await loadCa(caDir, now);
  const certPath =
    options.certPath ??
    (options.name !== undefined
      ? join(issuedIdentityDir(caDir, validateCertName(options.name)), IDENTITY_FILES.cert)
      : undefined);
  if (certPath === undefined) throw new NotFoundError('which certificate? give a name or a certificate file');
  if (!(await exists(certPath))) {
    throw new NotFoundError(`no certificate to revoke: ${certPath} is missing`, {
      hint: `vmferry revokes what it issued: look in ${join(ca.dir, ISSUED_DIR)}`,
    });
  }
  const cert = parseCertificate(await readFile(certPath), certPath);
  if (!cert.checkIssued(ca.cert) || !cert.verify(ca.cert.publicKey)) {
    throw new CertificateError(`${certPath} was not issued by the CA in ${ca.dir}`, { file: certPath });
  }
  const info = certificateInfo(cert);
  const serial = cert.serialNumber.toUpperCase();
  const subject = `/${cert.subject.split('\n').join('/')}`;

  const listPath = join(ca.dir, LIST_FILE);
  const list: RevocationList = (await exists(listPath))
    ? (JSON.parse(await readFile(listPath, 'utf8')) as RevocationList)
    : { crlNumber: 0, revoked: [] };
  const newlyRevoked = !list.revoked.some((r) => r.serial === serial);
  if (newlyRevoked) {
    list.revoked.push({
      serial,
      subject,
      notAfter: info.notAfter.toISOString(),
      revokedAt: now.toISOString(),
    });
  }
  list.crlNumber += 1;

  const crlPem = await makeCrl(ca, list, now, openssl);

  const crlPath = join(ca.dir, IDENTITY_FILES.crl);
  await publishFile(crlPath, crlPem, CERT_MODE, { exclusive: false });
  const copiedTo = await copyToIdentities(ca.dir, crlPem);
  await publishFile(listPath, `${JSON.stringify(list, null, 2)}\n`, CERT_MODE, { exclusive: false });
  return { serial, subject, newlyRevoked, crlPath, copiedTo, revokedCount: list.revoked.length };
}

/** A CRL of everything in `list`, signed by the CA, valid as long as the CA (openssl ca -gencrl). */
async function makeCrl(
  ca: LoadedCa,
  list: RevocationList,
  now: Date,
  openssl: OpensslRunner,
): Promise<Buffer> {
  const caNotAfter = certificateInfo(ca.cert).notAfter;
  const crlDays = Math.max(1, Math.floor((caNotAfter.getTime() - now.getTime()) / 86_400_000));
  return withScratchDir(ca.dir, async (scratch) => {
    const index = join(scratch, 'index.txt');
    const crlNumber = join(scratch, 'crlnumber');
    const config = join(scratch, 'ca.cnf');
    const out = join(scratch, IDENTITY_FILES.crl);
    const revoked = list.revoked.map(
      (r) =>
        `R\t${asn1Time(new Date(r.notAfter))}\t${asn1Time(new Date(r.revokedAt))}\t${r.serial}\tunknown\t${r.subject}\n`,
    );
    await writeFile(index, revoked.join(''), { mode: KEY_MODE });
    await writeFile(crlNumber, `${list.crlNumber.toString(16).padStart(2, '0').toUpperCase()}\n`);
    const settings = [
      '[ ca ]',
      'default_ca = vmferry',
      '[ vmferry ]',
      `database = ${index}`,
      `crlnumber = ${crlNumber}`,
      'default_md = sha256',
      `default_crl_days = ${crlDays}`,
      '',
    ];
    await writeFile(config, settings.join('\n'));
    await openssl([
      'ca',
      '-gencrl',
      '-config',
      config,
      '-keyfile',
      ca.keyPath,
      '-cert',
      ca.certPath,
      '-out',
      out,
    ]);
    return readFile(out);
  });
}

/** Copies the CRL into every identity directory the CA issued; returns those directories. */
async function copyToIdentities(caDir: string, crlPem: Buffer): Promise<string[]> {
  const copiedTo: string[] = [];
  const issuedRoot = join(caDir, ISSUED_DIR);
  if (!(await exists(issuedRoot))) return copiedTo;
  for (const entry of await readdir(issuedRoot, { withFileTypes: true })) {
    const dir = join(issuedRoot, entry.name);
    if (!entry.isDirectory() || !(await exists(join(dir, IDENTITY_FILES.ca)))) continue;
    await publishFile(join(dir, IDENTITY_FILES.crl), crlPem, CERT_MODE, { exclusive: false });
    copiedTo.push(dir);
  }
  return copiedTo;
}

/** ASN.1 UTCTime as OpenSSL's index.txt wants it: YYMMDDHHMMSSZ (dates before 2050). */
function asn1Time(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
}
