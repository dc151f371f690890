import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { parseDashboardListen } from './listen-address.js';

describe('dashboard listen address', () => {
  it('accepts loopback addresses', () => {
    assert.deepEqual(parseDashboardListen('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseDashboardListen('127.0.0.53:0'), { host: '127.0.0.53', port: 0 });
    assert.deepEqual(parseDashboardListen('[::1]:9000'), { host: '::1', port: 9000 });
    assert.deepEqual(parseDashboardListen('localhost:8080'), { host: 'localhost', port: 8080 });
  });

  for (const address of ['0.0.0.0:8080', '198.18.0.1:8080', '[::]:8080', 'example.org:80', '128.0.0.1:80']) {
    it(`refuses ${address}, saying why`, () => {
      assert.throws(
        () => parseDashboardListen(address),
        (err: unknown) =>
          err instanceof UsageError &&
          err.message.startsWith('the dashboard listens on loopback only, not on ') &&
          err.message.includes(': it acts with your certificate') &&
          (err.hint ?? '').includes('ssh -L'),
      );
    });
  }

  for (const bad of ['8080', '127.0.0.1', '127.0.0.1:http', '127.0.0.1:70000', '']) {
    it(`refuses the malformed ${JSON.stringify(bad)}`, () => {
      assert.throws(
        () => parseDashboardListen(bad),
        (err: unknown) =>
          err instanceof UsageError &&
          err.message === `--listen must be HOST:PORT, got ${JSON.stringify(bad)}`,
      );
    });
  }
});
