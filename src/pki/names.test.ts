import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { validateCertName, validateDays, validateDnsName, validateIpAddress } from './names.js';

function throwsNaming(fn: () => unknown, value: string): void {
  assert.throws(fn, (err: unknown) => err instanceof UsageError && err.message.includes(`'${value}'`));
}

describe('pki names', () => {
  it('accepts host names as certificate names and rejects the rest, naming the value', () => {
    assert.equal(validateCertName('host-a'), 'host-a');
    assert.equal(validateCertName('host-a.example.net'), 'host-a.example.net');
    for (const bad of [
      '',
      'host_a',
      '-host',
      'host-',
      'a..b',
      '../etc',
      'a/b',
      '*.example.net',
      '198.18.0.1',
      'x'.repeat(64),
    ]) {
      throwsNaming(() => validateCertName(bad), bad);
    }
  });

  it('accepts DNS names with a leading wildcard and sends IP addresses to --ip', () => {
    assert.equal(validateDnsName('*.example.net'), '*.example.net');
    assert.equal(validateDnsName('a1.b-2.example'), 'a1.b-2.example');
    throwsNaming(() => validateDnsName('a.*.example'), 'a.*.example');
    throwsNaming(() => validateDnsName('bad name'), 'bad name');
    assert.throws(
      () => validateDnsName('198.18.0.1'),
      (err: unknown) => err instanceof UsageError && /--ip 198\.18\.0\.1/.test(err.hint ?? ''),
    );
  });

  it('accepts IPv4 and IPv6 literals only', () => {
    assert.equal(validateIpAddress('198.18.0.1'), '198.18.0.1');
    assert.equal(validateIpAddress('2001:db8::1'), '2001:db8::1');
    for (const bad of ['198.18.0.256', 'host-a', '198.18.0.1/24', '[::1]', ''])
      throwsNaming(() => validateIpAddress(bad), bad);
  });

  it('accepts whole day counts from 1 to 36500', () => {
    assert.equal(validateDays(1), 1);
    assert.equal(validateDays(36500), 36500);
    for (const bad of [0, -1, 1.5, 36501, Number.NaN]) throwsNaming(() => validateDays(bad), String(bad));
  });
});
