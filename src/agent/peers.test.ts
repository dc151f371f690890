import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { parsePeers } from './peers.js';

describe('parsePeers', () => {
  it('reads a comma-separated list, trims, drops duplicates and empty entries', () => {
    assert.deepEqual(
      parsePeers(' https://198.18.0.2:7700, https://198.18.0.3:7700/,,https://198.18.0.2:7700 '),
      ['https://198.18.0.2:7700', 'https://198.18.0.3:7700'],
    );
    assert.deepEqual(parsePeers(null), []);
    assert.deepEqual(parsePeers('  '), []);
  });

  it('refuses what is not https://HOST:PORT, naming the entry', () => {
    for (const bad of [
      '198.18.0.2:7700',
      'http://a:1',
      'https://a',
      'https://a:1/x',
      'unix:/tmp/agent.sock',
    ]) {
      assert.throws(
        () => parsePeers(`https://ok:1,${bad}`),
        (err: unknown) => err instanceof UsageError && err.message.includes(JSON.stringify(bad)),
        bad,
      );
    }
  });
});
