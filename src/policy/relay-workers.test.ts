import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { decideRelayWorkers } from './relay-workers.js';

describe('relay workers', () => {
  it('are one per 2 CPUs, at least one, by default', () => {
    assert.equal(decideRelayWorkers({ cpus: 1 }).value, 1);
    assert.equal(decideRelayWorkers({ cpus: 2 }).value, 1);
    assert.equal(decideRelayWorkers({ cpus: 16 }).value, 8);
    assert.match(
      decideRelayWorkers({ cpus: 16 }).reasons[0]?.message ?? '',
      /one per 2 of the host's 16 CPUs/,
    );
  });

  it('follow [vmferry] workers when set (0 is the default), and refuse a count out of range', () => {
    assert.equal(decideRelayWorkers({ cpus: 2, configured: 3 }).value, 3);
    assert.equal(decideRelayWorkers({ cpus: 8, configured: 0 }).value, 4);
    assert.throws(
      () => decideRelayWorkers({ cpus: 2, configured: 257 }),
      (err: unknown) => err instanceof UsageError && /from 1 to 256, got 257/.test(err.message),
    );
  });
});
