import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pinnedFigures, replaceReadmeBlock } from './pinned.js';
import { pinnedTable, type BenchResult } from './report.js';

const tunnelled: BenchResult = {
  transport: 'tunnelled',
  channels: 1,
  gbps: 3.2,
  minGbps: 3,
  maxGbps: 3.4,
  cpuSourcePerGiB: 1.33,
  cpuDestinationPerGiB: 2.44,
  cpuSourcePerGiBByKind: { qemu: 0.5, agent: 0.05, relay: 0.78 },
  cpuDestinationPerGiBByKind: { qemu: 1.34, agent: 0.05, relay: 1.05 },
  runs: [],
};

describe('pinned benchmark figures', () => {
  it("sets the tunnel's relay against the cipher, and projects from the run's own costs", () => {
    const [p] = pinnedFigures([tunnelled], 0.35, [{ cores: 16, linkGbps: 25 }]);
    assert.deepEqual(p?.relayVsCipher, { source: 2.2, destination: 3 });
    assert.deepEqual(p?.pinnedCheck, {
      projectedGbps: 3.52,
      measuredGbps: 3.2,
      ratio: 0.91,
      limit: 'destination cores',
    });
    assert.deepEqual(p?.projections, [{ cores: 16, linkGbps: 25, gbps: 6.41, limit: 'destination qemu' }]);
    const table = pinnedTable([tunnelled], p === undefined ? [] : [p], {
      suite: 'TLS_AES_256_GCM_SHA384',
      cpuPerGiB: 0.35,
    });
    assert.equal(
      table[2],
      '| tunnelled | 0.78 / 1.05 | 2.2x / 3.0x | 3.52 (3.20, destination cores) | 6.4 (destination qemu) |',
    );
  });

  it('replaces the marked README block, and refuses a README without it', () => {
    const readme = 'a\n<!-- bench:pinned -->\nold\n<!-- /bench:pinned -->\nb\n';
    assert.equal(
      replaceReadmeBlock(readme, 'bench:pinned', ['new 1', 'new 2']),
      'a\n<!-- bench:pinned -->\nnew 1\nnew 2\n<!-- /bench:pinned -->\nb\n',
    );
    assert.throws(
      () => replaceReadmeBlock('a', 'bench:pinned', []),
      /README.md has no <!-- bench:pinned -->/,
    );
  });
});
