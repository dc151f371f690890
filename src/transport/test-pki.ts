import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostSetupError, describeError } from '../errors.js';

export interface PemIdentityBuffers {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** A throwaway CA that issues identities by CN. */
export interface TestPki {
  /** The CA certificate (PEM). */
  ca: Buffer;
  /** A certificate for `commonName` signed by this CA, with SAN IP 127.0.0.1 and the given extra IPs. */
  issue(commonName: string, ips?: string[]): PemIdentityBuffers;
  /** Removes the CA's files. */
  dispose(): void;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? describeError(err);
    throw new HostSetupError(`openssl ${args[0] ?? ''} failed: ${stderr}`, { hint: 'install openssl' });
  }
}

/**
 * Creates a throwaway CA with the openssl CLI (ECDSA P-256), for tests and the
 * lab benchmark. Not for deployments: the keys sit unprotected in a temp dir.
 */
export function createTestPki(name = 'vmferry-test-ca'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'vmf-pki-'));
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const ca = readFileSync(join(dir, 'ca.crt'));
  let serial = 1;
  return {
    ca,
    issue(commonName: string, ips: string[] = []): PemIdentityBuffers {
      const base = `id${serial}`;
      serial += 1;
      const san = ['IP:127.0.0.1', ...ips.map((ip) => `IP:${ip}`), `DNS:${commonName}`].join(',');
      writeFileSync(
        join(dir, `${base}.ext`),
        `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`,
      );
      openssl(
        [
          'req',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          `${base}.key`,
          '-out',
          `${base}.csr`,
          '-subj',
          `/CN=${commonName}`,
        ],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${base}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-set_serial',
          String(serial + 1000),
          '-days',
          '2',
          '-out',
          `${base}.crt`,
          '-extfile',
          `${base}.ext`,
        ],
        dir,
      );
      return {
        ca,
        cert: readFileSync(join(dir, `${base}.crt`)),
        key: readFileSync(join(dir, `${base}.key`)),
      };
    },
    dispose(): void {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
