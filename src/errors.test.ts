import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ConfigError,
  ConflictError,
  ERROR_CODES,
  LimitError,
  NotFoundError,
  PeerError,
  QmpCommandError,
  errorFromBody,
} from './errors.js';

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

  it('maps codes to HTTP statuses and back from API bodies, as the class of the code', () => {
    assert.equal(new NotFoundError('x').httpStatus, 404);
    assert.equal(new LimitError('x').httpStatus, 429);
    assert.equal(
      new QmpCommandError('migrate', 'GenericError', 'x').httpStatus,
      ERROR_CODES.VMF_ERR_QMP_COMMAND,
    );
    const e = errorFromBody(
      { code: 'VMF_ERR_CONFLICT', message: 'vm exists', hint: 'pick another name' },
      'x',
    );
    assert.ok(e instanceof ConflictError);
    assert.equal(e.code, 'VMF_ERR_CONFLICT');
    assert.equal(e.hint, 'pick another name');
    const garbage = errorFromBody('garbage', 'peer said 500');
    assert.ok(garbage instanceof PeerError);
    assert.equal(garbage.message, 'peer said 500');
  });

  it('takes a code it does not know from a peer as a fault of that peer, keeping its message', () => {
    const e = errorFromBody({ code: 'VMF_ERR_SOMETHING_NEW', message: 'new' }, 'peer said 500');
    assert.ok(e instanceof PeerError);
    assert.equal(e.message, 'peer said 500: new');
  });
});
