import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PlanError, UsageError } from '../errors.js';
import { parsePeers, requirePeer } from './peers.js';

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

describe('requirePeer', () => {
  const peers = ['https://198.18.0.2:7700', 'https://198.18.0.3:7700'];

  it('lets a listed peer through, however its address is written', () => {
    requirePeer('https://198.18.0.3:7700', peers);
    requirePeer('https://198.18.0.3:7700/', peers);
    requirePeer('198.18.0.2:7700', peers);
  });

  it('with no peers configured, lets any agent address through', () => {
    requirePeer('https://198.18.0.9:7700', []);
  });

  it('refuses an address not in the list, naming it and the option', () => {
    for (const to of ['https://198.18.0.4:7700', 'https://198.18.0.2:7701', 'https://198.18.0.20:7700']) {
      assert.throws(
        () => requirePeer(to, peers),
        (err: unknown) =>
          err instanceof PlanError &&
          err.code === 'VMF_ERR_PLAN' &&
          err.message ===
            `${to} is not one of this agent's peers ([vmferry] peers = https://198.18.0.2:7700, https://198.18.0.3:7700)`,
        to,
      );
    }
  });
});
