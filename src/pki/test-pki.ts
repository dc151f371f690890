import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caPaths, ecKeyArgs, initCa } from './ca.js';
import { CLIENT_EXTENSIONS, LEAF_EXTENSIONS, opensslConfig, subjectAltNames } from './extensions.js';
import { loadTlsIdentity, type TlsIdentity } from './identity.js';
import { issueCertificate, issuedIdentityDir } from './issue.js';
import { runOpenssl } from './openssl.js';
import { revokeCertificate } from './revoke.js';
import type { Role } from './roles.js';

/** A throwaway CA that issues identities by CN. */
export interface TestPki {
  /** The CA directory (`ca.pem`, `ca-key.pem`, `issued/`). */
  dir: string;
  /** The CA certificate (PEM). */
  ca: Buffer;
  /** An identity for `commonName` with `role` (default host) signed by this CA, with SAN IP 127.0.0.1 and the given extra IPs. */
  issue(commonName: string, ips?: string[], role?: Role): Promise<TlsIdentity>;
  /** An identity whose certificate expired yesterday (validity 2020-01-01 to yesterday). */
  issueExpired(commonName: string, role: Role): Promise<TlsIdentity>;
  /** An identity as vmferry issued them before roles: `/CN=name` only, serverAuth and clientAuth. */
  issueWithoutRole(commonName: string): Promise<TlsIdentity>;
  /** Like issue, into `outDir`: a second certificate with a name already issued (another role). */
  issueInto(outDir: string, commonName: string, role: Role): Promise<TlsIdentity>;
  /** Revokes what was issued to `commonName`; identities loaded afterwards carry the CRL. */
  revoke(commonName: string): Promise<void>;
  /** Removes the CA's files. */
  dispose(): void;
}

/**
 * A CA in a temporary directory, for tests and the relay benchmarks: the same
 * certificates `vmferry ca init/issue` makes. Not for deployments: the keys sit
 * in a temp dir.
 */
export async function createTestPki(commonName = 'vmferry-test-ca'): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), 'vmf-pki-'));
  await initCa(dir, { commonName });
  return {
    dir,
    ca: readFileSync(caPaths(dir).certPath),
    async issue(name: string, ips: string[] = [], role: Role = 'host'): Promise<TlsIdentity> {
      const issued = await issueCertificate(dir, { name, role, ips: ['127.0.0.1', ...ips] });
      return loadTlsIdentity(issued.dir);
    },
    issueExpired: (name: string, role: Role) => issueExpired(dir, name, role),
    issueWithoutRole: (name: string) => issueWithoutRole(dir, name),
    async issueInto(outDir: string, name: string, role: Role): Promise<TlsIdentity> {
      await issueCertificate(dir, { name, role, ips: ['127.0.0.1'], outDir });
      return loadTlsIdentity(outDir);
    },
    async revoke(name: string): Promise<void> {
      await revokeCertificate(dir, { name });
    },
    dispose(): void {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * An identity for `name` whose certificate was valid from 2020-01-01 to yesterday.
 * `vmferry ca issue` (openssl req -x509) cannot date a certificate in the past; openssl ca can.
 */
async function issueExpired(dir: string, name: string, role: Role): Promise<TlsIdentity> {
  const out = issuedIdentityDir(dir, name);
  const identity = await issueCertificate(dir, { name, role, ips: ['127.0.0.1'] });
  const scratch = mkdtempSync(join(dir, 'expired-'));
  const config = join(scratch, 'ca.cnf');
  const yesterday = new Date(Date.now() - 86_400_000);
  const asn1 = (d: Date): string => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
  writeFileSync(join(scratch, 'index.txt'), '');
  writeFileSync(
    config,
    [
      opensslConfig(subjectAltNames(name, [], ['127.0.0.1'])),
      '[ca]',
      'default_ca = expired',
      '[expired]',
      `database = ${join(scratch, 'index.txt')}`,
      `new_certs_dir = ${scratch}`,
      `serial = ${join(scratch, 'serial')}`,
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      '[any]',
      'organizationalUnitName = supplied',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  const csr = join(scratch, 'req.pem');
  const key = join(scratch, 'key.pem');
  await runOpenssl(ecKeyArgs(key));
  await runOpenssl(['req', '-new', '-key', key, '-subj', `/OU=${role}/CN=${name}`, '-out', csr]);
  await runOpenssl([
    'ca',
    '-batch',
    '-notext',
    '-preserveDN',
    '-config',
    config,
    '-cert',
    caPaths(dir).certPath,
    '-keyfile',
    caPaths(dir).keyPath,
    '-in',
    csr,
    '-out',
    join(out, 'cert.pem'),
    '-startdate',
    '20200101000000Z',
    '-enddate',
    asn1(yesterday),
    '-extensions',
    role === 'host' ? LEAF_EXTENSIONS : CLIENT_EXTENSIONS,
    '-create_serial',
  ]);
  writeFileSync(join(out, 'key.pem'), readFileSync(key), { mode: 0o600 });
  rmSync(scratch, { recursive: true, force: true });
  // loadTlsIdentity refuses an expired identity, as an agent must: read the files as they are.
  return {
    ca: readFileSync(identity.caPath),
    cert: readFileSync(join(out, 'cert.pem')),
    key: readFileSync(join(out, 'key.pem')),
  };
}

/** A certificate from before roles: subject `/CN=name` only, as `vmferry ca issue` made them. */
async function issueWithoutRole(dir: string, name: string): Promise<TlsIdentity> {
  const out = join(dir, 'no-role', name);
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const config = join(out, 'openssl.cnf');
  writeFileSync(config, opensslConfig(subjectAltNames(name, [], ['127.0.0.1'])));
  const key = join(out, 'key.pem');
  await runOpenssl(ecKeyArgs(key));
  const ca = caPaths(dir);
  const cert = join(out, 'cert.pem');
  await runOpenssl([
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-subj',
    `/CN=${name}`,
    '-CA',
    ca.certPath,
    '-CAkey',
    ca.keyPath,
    '-days',
    '30',
    '-config',
    config,
    '-extensions',
    LEAF_EXTENSIONS,
    '-out',
    cert,
  ]);
  return { ca: readFileSync(ca.certPath), cert: readFileSync(cert), key: readFileSync(key) };
}
