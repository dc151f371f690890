import { isIP } from 'node:net';
import { UsageError } from '../errors.js';

const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MAX_DNS_LENGTH = 253;

function dnsProblem(name: string, allowWildcard: boolean): string | undefined {
  if (name.length === 0) return 'it is empty';
  if (name.length > MAX_DNS_LENGTH) return `it is longer than ${MAX_DNS_LENGTH} characters`;
  if (isIP(name) !== 0) return 'it is an IP address';
  const labels = name.split('.');
  const first = allowWildcard && labels[0] === '*' && labels.length > 1 ? 1 : 0;
  for (const label of labels.slice(first)) {
    if (!LABEL.test(label)) {
      return label.length === 0
        ? 'it has an empty label (two dots in a row, or a dot at either end)'
        : `the label '${label}' is not letters, digits and inner hyphens of at most 63 characters`;
    }
  }
  return undefined;
}

/**
 * Checks the name a certificate is issued to. It becomes the subject CN, a
 * DNS subjectAltName and a directory name, so it must be a host name: dot-separated
 * labels of letters, digits and inner hyphens.
 */
export function validateCertName(name: string): string {
  const problem = dnsProblem(name, false);
  if (problem !== undefined) {
    throw new UsageError(`invalid certificate name '${name}': ${problem}`, {
      hint: 'use a host name such as host-a or host-a.example.net (it becomes the CN and a DNS name)',
    });
  }
  return name;
}

/** Checks a DNS subjectAltName; a leading `*.` wildcard label is allowed. */
export function validateDnsName(name: string): string {
  const problem = dnsProblem(name, true);
  if (problem !== undefined) {
    throw new UsageError(`invalid DNS name '${name}': ${problem}`, {
      hint:
        isIP(name) !== 0 ? `pass addresses with --ip ${name}` : 'use a host name such as host-a.example.net',
    });
  }
  return name;
}

/** Checks an IPv4 or IPv6 address for an IP subjectAltName. */
export function validateIpAddress(address: string): string {
  if (isIP(address) === 0) {
    throw new UsageError(`invalid IP address '${address}'`, {
      hint: 'give a literal IPv4 (198.18.0.1) or IPv6 (2001:db8::1) address; host names go in --dns',
    });
  }
  return address;
}

/** Checks a validity period in days (a whole number from 1 to 36500). */
export function validateDays(days: number, option = 'days'): number {
  if (!Number.isInteger(days) || days < 1 || days > 36500) {
    throw new UsageError(
      `invalid ${option} '${String(days)}': expected a whole number of days from 1 to 36500`,
    );
  }
  return days;
}
