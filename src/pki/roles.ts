import { AuthError, UsageError } from '../errors.js';

/**
 * What a certificate may be used for, written by `vmferry ca issue --role` into its
 * subject's OU (`/OU=host/CN=host-a`): the CA alone decides it, and every TLS stack
 * vmferry meets (Node, GnuTLS in QEMU, openssl) shows it.
 *
 * - `host`: an agent. Serves the API and tunnels, and calls other agents' migration routes.
 * - `operator`: a person or tool driving agents: VMs and migrations, read and write.
 * - `viewer`: an operator who may only read (hosts, VMs, migrations, metrics).
 * - `metrics`: a scraper: GET /metrics only.
 */
export const ROLES = ['host', 'operator', 'viewer', 'metrics'] as const;
export type Role = (typeof ROLES)[number];

/** One line per role, for `ca issue --help` and docs/security.md. */
export const ROLE_HELP: Record<Role, string> = {
  host: 'an agent: serves the API and tunnels, and drives migrations on other agents',
  operator: 'drives agents: starts and stops VMs, starts, aborts and forces migrations, reads everything',
  viewer: 'reads hosts, VMs, migrations and metrics; changes nothing',
  metrics: 'scrapes GET /metrics; nothing else',
};

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** Checks a role given on the command line; the error names the bad value and the choices. */
export function validateRole(value: string | undefined): Role {
  if (isRole(value)) return value;
  throw new UsageError(`invalid role ${JSON.stringify(value)}: expected one of ${ROLES.join(', ')}`, {
    hint: 'host for an agent, operator for a person, viewer for read-only use, metrics for a scraper',
  });
}

/**
 * The role a certificate's subject names in its OU, as Node gives the subject: the
 * text of an X509Certificate ("OU=host\nCN=host-a") or a TLS peer certificate's
 * object. Undefined when it names none, an unknown one, or several (a certificate
 * vmferry's CA did not issue that way names no role).
 */
export function roleOf(subject: string | { OU?: string | string[] } | undefined): Role | undefined {
  const units =
    typeof subject === 'string'
      ? subject
          .split('\n')
          .filter((line) => line.startsWith('OU='))
          .map((line) => line.slice(3))
      : [subject?.OU ?? []].flat();
  const only = units.length === 1 ? units[0] : undefined;
  return isRole(only) ? only : undefined;
}

/**
 * The refusal for a certificate without a role: one issued before roles existed.
 * It is never guessed (treating it as a host would let an old operator certificate
 * prepare migrations); the fix is a new certificate.
 */
export function noRoleError(commonName: string, where: string): AuthError {
  return new AuthError(`the certificate of ${JSON.stringify(commonName)} names no vmferry role (${where})`, {
    hint: `issue it again with its role: vmferry ca issue CA_DIR --name ${commonName || 'NAME'} --role host|operator|viewer|metrics --force`,
  });
}
