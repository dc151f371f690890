import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commonNameOf, parseSubjectAltName, shortIp } from './certificate-info.js';

describe('certificate info', () => {
  it('splits Node subjectAltName text, decoding quoted values', () => {
    assert.deepEqual(
      parseSubjectAltName(
        'DNS:host-a, DNS:a.example.net, IP Address:198.18.0.1, IP Address:2001:DB8:0:0:0:0:0:1',
      ),
      {
        dnsNames: ['host-a', 'a.example.net'],
        ips: ['198.18.0.1', '2001:db8::1'],
      },
    );
    assert.deepEqual(parseSubjectAltName('DNS:"a, b", email:x@y'), { dnsNames: ['a, b'], ips: [] });
    assert.deepEqual(parseSubjectAltName(''), { dnsNames: [], ips: [] });
  });

  it('writes IPv6 addresses in RFC 5952 short form', () => {
    assert.equal(shortIp('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
    assert.equal(shortIp('0:0:0:0:0:0:0:1'), '::1');
    assert.equal(shortIp('2001:db8:0:1:0:0:0:0'), '2001:db8:0:1::');
    assert.equal(shortIp('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1');
    assert.equal(shortIp('198.18.0.1'), '198.18.0.1');
  });

  it('finds the CN in a multi-line distinguished name', () => {
    assert.equal(commonNameOf('C=UK\nO=x\nCN=host-a'), 'host-a');
    assert.equal(commonNameOf('O=x'), '');
  });

  it('reads CNs as Node reports them; a certificate with several CNs names nobody, in either form', () => {
    assert.equal(commonNameOf({ CN: 'a' }), 'a');
    assert.equal(commonNameOf({ CN: ['a', 'b'] }), '');
    assert.equal(commonNameOf('CN=a\nCN=b'), '');
    assert.equal(commonNameOf(undefined), '');
    assert.equal(commonNameOf({}), '');
  });
});
