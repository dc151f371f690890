import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caPaths, initCa } from './ca.js';
import { loadTlsIdentity, type TlsIdentity } from './identity.js';
import { issueCertificate } from './issue.js';

/** A throwaway CA that issues identities by CN. */
export interface TestPki {
  /** The CA certificate (PEM). */
  ca: Buffer;
  /** An identity for `commonName` signed by this CA, with SAN IP 127.0.0.1 and the given extra IPs. */
  issue(commonName: string, ips?: string[]): Promise<TlsIdentity>;
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
    ca: readFileSync(caPaths(dir).certPath),
    async issue(name: string, ips: string[] = []): Promise<TlsIdentity> {
      const issued = await issueCertificate(dir, { name, ips: ['127.0.0.1', ...ips] });
      return loadTlsIdentity(issued.dir);
    },
    dispose(): void {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
