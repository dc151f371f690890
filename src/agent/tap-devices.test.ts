import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tapMac, tapName } from './tap-devices.js';

describe('tap device names', () => {
  it('fit in 15 characters and stay the same for the same host, VM and NIC', () => {
    const name = tapName('host-a', 'web-1', 0);
    assert.match(name, /^vmf[0-9a-f]{12}$/);
    assert.ok(name.length <= 15);
    assert.equal(tapName('host-a', 'web-1', 0), name);
  });

  it('differ between NICs, VMs and hosts, also for names that run together', () => {
    const names = [
      tapName('host-a', 'web-1', 0),
      tapName('host-a', 'web-1', 1),
      tapName('host-b', 'web-1', 0),
      tapName('host-a', 'web-10', 0),
      tapName('host-a', 'web-1', 10),
      tapName('host-aw', 'eb-1', 0),
    ];
    assert.equal(new Set(names).size, names.length);
  });

  it("give the tap the guest's MAC with 0xfe first, above any MAC a bridge would take from its ports", () => {
    assert.equal(tapMac('52:54:00:ab:cd:ef'), 'fe:54:00:ab:cd:ef');
    assert.equal(tapMac('fa:16:3e:12:ab:01'), 'fe:16:3e:12:ab:01');
  });
});
