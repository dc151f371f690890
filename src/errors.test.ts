import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, QmpCommandError, errorFromBody, httpStatusFor } from './errors.js';

describe('errors', () => {
  it('ConfigError names file and line in its message', () => {
    const e = new ConfigError('bad value', { file: '/etc/nova/nova.conf', line: 12, option: 'x' });
    assert.equal(e.code, 'VMF_ERR_CONFIG');
    assert.equal(e.message, '/etc/nova/nova.conf:12: bad value');
    assert.equal(e.line, 12);
  });

  it('QmpCommandError keeps QEMU class and text', () => {
    const e = new QmpCommandError('migrate', 'GenericError', 'no such thing');
    assert.equal(e.qemuClass, 'GenericError');
    assert.equal(e.qemuDesc, 'no such thing');
    assert.match(e.message, /migrate.*no such thing/);
  });

  it('maps codes to HTTP statuses and back from API bodies', () => {
    assert.equal(httpStatusFor('VMF_ERR_NOT_FOUND'), 404);
    assert.equal(httpStatusFor('VMF_ERR_SOMETHING_NEW'), 500);
    const e = errorFromBody(
      { code: 'VMF_ERR_CONFLICT', message: 'vm exists', hint: 'pick another name' },
      'x',
    );
    assert.equal(e.code, 'VMF_ERR_CONFLICT');
    assert.equal(e.hint, 'pick another name');
    assert.equal(errorFromBody('garbage', 'peer said 500').message, 'peer said 500');
  });
});
