import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { DEFAULT_CIPHER_SUITES, resolveTuning, restartDelayMs } from './relay-tuning.js';

describe('relay tuning', () => {
  it('fills in defaults', () => {
    const t = resolveTuning();
    assert.equal(t.cipherSuites, DEFAULT_CIPHER_SUITES);
    assert.equal(t.batchWrites, true);
    assert.equal(t.batchTlsWrites, false);
    assert.ok(t.writeHighWaterMark >= 16 * 1024);
  });

  it('keeps given values', () => {
    const t = resolveTuning({ cipherSuites: 'TLS_CHACHA20_POLY1305_SHA256', lingerMs: 0 });
    assert.equal(t.cipherSuites, 'TLS_CHACHA20_POLY1305_SHA256');
    assert.equal(t.lingerMs, 0);
  });

  it('names the option and the value it got', () => {
    assert.throws(
      () => resolveTuning({ writeHighWaterMark: 12 }),
      (e: unknown) => e instanceof UsageError && /writeHighWaterMark/.test(e.message) && /12/.test(e.message),
    );
    assert.throws(() => resolveTuning({ cipherSuites: 'AES128-GCM-SHA256' }), /cipherSuites/);
    assert.throws(() => resolveTuning({ noDelay: 'yes' as unknown as boolean }), /noDelay/);
    assert.throws(() => resolveTuning({ chunkSize: 1 } as never), /unknown transport option chunkSize/);
  });

  it('restarts at once, then backs off up to 5 s', () => {
    assert.deepEqual([1, 2, 3, 4, 10, 100].map(restartDelayMs), [0, 100, 200, 400, 5000, 5000]);
  });
});
