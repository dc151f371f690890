import { X509Certificate } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { CertificateError } from '../errors.js';
import { roleOf, type Role } from './roles.js';

/** What vmferry needs to know about a certificate: who it names and how long it is good for. */
export interface CertificateInfo {
  commonName: string;
  /** The role its subject OU names (undefined: none, from before roles existed). */
  role: Role | undefined;
  dnsNames: string[];
  ips: string[];
  issuer: string;
  serialNumber: string;
  /** SHA-256 fingerprint, colon-separated hex as OpenSSL prints it. */
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
}

/** Parses a PEM certificate; `source` names it in errors (a file path, "peer"). */
export function parseCertificate(pem: string | Buffer, source: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new CertificateError(`${source} is not a PEM certificate`, { file: source, cause: err });
  }
}

export function certificateInfo(cert: X509Certificate): CertificateInfo {
  const sans = parseSubjectAltName(cert.subjectAltName ?? '');
  return {
    commonName: commonNameOf(cert.subject),
    role: roleOf(cert.subject),
    dnsNames: sans.dnsNames,
    ips: sans.ips,
    issuer: commonNameOf(cert.issuer),
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    isCa: cert.ca,
  };
}

/**
 * The CN of a certificate's subject (or issuer) as Node gives it: the text of an
 * X509Certificate ("C=UK\nCN=host-a") or the object of a TLS peer certificate.
 * "" when it has none, and when it has several: vmferry authorizes by CN, and a
 * certificate naming several hosts names none of them (its CA never issues one).
 */
export function commonNameOf(subject: string | { CN?: string | string[] } | undefined): string {
  const names =
    typeof subject === 'string'
      ? subject
          .split('\n')
          .filter((line) => line.startsWith('CN='))
          .map((line) => unquote(line.slice(3)))
      : [subject?.CN ?? []].flat();
  return names.length === 1 ? (names[0] ?? '') : '';
}

/**
 * Splits Node's subjectAltName text ("DNS:host-a, IP Address:198.18.0.1").
 * Node quotes values holding separators as JSON strings, so those are decoded
 * rather than split at their commas. IPv6 addresses come back in their short form.
 */
export function parseSubjectAltName(text: string): { dnsNames: string[]; ips: string[] } {
  const dnsNames: string[] = [];
  const ips: string[] = [];
  const entry = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (const m of text.matchAll(entry)) {
    const kind = m[1];
    const value = unquote(m[2] ?? '');
    if (kind === 'DNS') dnsNames.push(value);
    else if (kind === 'IP Address') ips.push(shortIp(value));
  }
  return { dnsNames, ips };
}

function unquote(value: string): string {
  if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
    try {
      return JSON.parse(value) as string;
    } catch {
      return value;
    }
  }
  return value;
}

/** OpenSSL prints IPv6 SANs in full ("2001:DB8:0:0:0:0:0:1"); compare-friendly form is RFC 5952. */
export function shortIp(address: string): string {
  if (!isIPv6(address) || address.includes('.')) return address;
  const halves = address.toLowerCase().split('::');
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
  const tail = halves.length > 1 && halves[1] !== '' ? (halves[1] ?? '').split(':') : [];
  const groups = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail].map((g) =>
    g.replace(/^0+(?=.)/, ''),
  );
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}
