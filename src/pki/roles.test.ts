import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthError, UsageError } from '../errors.js';
import { ROLES, noRoleError, roleOf, validateRole } from './roles.js';

describe('pki roles', () => {
  it('reads the role from the subject OU, as text or as a TLS peer certificate object', () => {
    assert.equal(roleOf('OU=host\nCN=host-a'), 'host');
    assert.equal(roleOf('OU=viewer\nCN=alice'), 'viewer');
    assert.equal(roleOf({ OU: 'operator', CN: 'bob' } as { OU: string }), 'operator');
    assert.equal(roleOf({ OU: ['metrics'] }), 'metrics');
  });

  it('names no role for none, an unknown one, several, or a different case', () => {
    assert.equal(roleOf('CN=host-a'), undefined);
    assert.equal(roleOf('OU=admin\nCN=host-a'), undefined);
    assert.equal(roleOf('OU=host\nOU=operator\nCN=x'), undefined);
    assert.equal(roleOf({ OU: ['host', 'host'] }), undefined);
    assert.equal(roleOf('OU=Host\nCN=x'), undefined);
    assert.equal(roleOf(undefined), undefined);
    assert.equal(roleOf({}), undefined);
  });

  it('validates a role given on the command line, naming the bad value', () => {
    for (const role of ROLES) assert.equal(validateRole(role), role);
    assert.throws(
      () => validateRole('root'),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message === 'invalid role "root": expected one of host, operator, viewer, metrics',
    );
    assert.throws(() => validateRole(undefined), UsageError);
  });

  it('tells the holder of a certificate without a role to have it issued again', () => {
    const err = noRoleError('old-op', 'API');
    assert.ok(err instanceof AuthError);
    assert.equal(err.message, 'the certificate of "old-op" names no vmferry role (API)');
    assert.match(
      err.hint ?? '',
      /vmferry ca issue CA_DIR --name old-op --role host\|operator\|viewer\|metrics --force/,
    );
  });
});
