import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reachableUri } from './outgoing.js';

describe('reachableUri', () => {
  it('replaces a wildcard listen address by the address the destination agent is reached at', () => {
    assert.equal(reachableUri('tcp:0.0.0.0:49152', '198.18.0.2'), 'tcp:198.18.0.2:49152');
    assert.equal(reachableUri('tcp:[::]:49152', 'fd00::2'), 'tcp:[fd00::2]:49152');
  });

  it('keeps a specific address, and keeps the URI when the agent was reached over a unix socket', () => {
    assert.equal(reachableUri('tcp:198.18.0.9:49152', '198.18.0.2'), 'tcp:198.18.0.9:49152');
    assert.equal(reachableUri('tcp:0.0.0.0:49152', undefined), 'tcp:0.0.0.0:49152');
  });
});
