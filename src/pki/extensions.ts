/**
 * The OpenSSL config vmferry signs with. It is written out for every run
 * rather than relying on the system openssl.cnf, whose defaults (v3_ca
 * sections, copy_extensions) differ between distributions.
 *
 * Leaf certificates carry keyUsage=digitalSignature NOT marked critical: QEMU
 * 7.2 before the fix "crypto: stop requiring key encipherment usage in x509
 * certs" rejects a certificate whose critical keyUsage lacks keyEncipherment,
 * and RFC 8813 forbids keyEncipherment on ECDSA keys. Non-critical satisfies
 * both; OpenSSL and GnuTLS still enforce the usage it lists.
 *
 * Hosts get serverAuth and clientAuth (an agent serves and calls); every other
 * role clientAuth only, so such a certificate cannot pose as an agent.
 */
export function opensslConfig(subjectAltNames: readonly string[]): string {
  const san = subjectAltNames.length > 0 ? [`subjectAltName = ${subjectAltNames.join(',')}`] : [];
  const leaf = (extendedKeyUsage: string): string[] => [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = digitalSignature',
    `extendedKeyUsage = ${extendedKeyUsage}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid:always',
    ...san,
  ];
  const lines = [
    '[req]',
    'distinguished_name = req_dn',
    'prompt = no',
    'utf8 = yes',
    '[req_dn]',
    '[vmferry_ca]',
    'basicConstraints = critical,CA:TRUE',
    'keyUsage = critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier = hash',
    `[${LEAF_EXTENSIONS}]`,
    ...leaf('serverAuth,clientAuth'),
    `[${CLIENT_EXTENSIONS}]`,
    ...leaf('clientAuth'),
  ];
  return `${lines.join('\n')}\n`;
}

/** The subjectAltName entries of a leaf: DNS:name first, then the extra DNS names, then IPs; no duplicates. */
export function subjectAltNames(name: string, dnsNames: readonly string[], ips: readonly string[]): string[] {
  const dns = [...new Set([name, ...dnsNames])].map((d) => `DNS:${d}`);
  const ip = [...new Set(ips)].map((a) => `IP:${a}`);
  return [...dns, ...ip];
}

export const CA_EXTENSIONS = 'vmferry_ca';
export const LEAF_EXTENSIONS = 'vmferry_leaf';
/** Operators, viewers and scrapers only connect: clientAuth alone, so no agent accepts them as a server. */
export const CLIENT_EXTENSIONS = 'vmferry_client';
