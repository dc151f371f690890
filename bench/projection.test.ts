import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkAgainstPinned, projectThroughput, type StageCosts } from './projection.js';

const GBIT_PER_GIB = (8 * 1024 ** 3) / 1e9;

// A tunnelled migration as measured pinned: source 1.33 CPU s/GiB, destination 2.44.
const TUNNEL: StageCosts = {
  source: { qemu: 0.5, agent: 0.05, relay: 0.78 },
  destination: { qemu: 1.34, agent: 0.05, relay: 1.05 },
};

describe('projectThroughput', () => {
  it('one core per host: the busier host limits (1 core / its CPU s per GiB)', () => {
    const p = projectThroughput({
      costs: TUNNEL,
      channels: 1,
      cores: 1,
      linkGbps: Infinity,
      relayWorkers: 1,
    });
    assert.equal(p.limit, 'destination cores');
    assert.equal(p.gbps, Math.round((1 / 2.44) * GBIT_PER_GIB * 100) / 100);
  });

  it('many cores, one stream: the single-threaded stage with the highest cost limits', () => {
    const p = projectThroughput({ costs: TUNNEL, channels: 1, cores: 16, linkGbps: Infinity });
    assert.equal(p.limit, 'destination qemu');
    assert.equal(p.gbps, Math.round((1 / 1.34) * GBIT_PER_GIB * 100) / 100);
  });

  it('many cores and channels: the link limits', () => {
    const p = projectThroughput({ costs: TUNNEL, channels: 8, cores: 16, linkGbps: 25 });
    assert.deepEqual(p, { gbps: 25, limit: 'link' });
  });

  it('the relay spreads over its workers only as far as there are channel connections', () => {
    const relayBound: StageCosts = { source: { relay: 2 }, destination: { relay: 2 } };
    const at = (channels: number, relayWorkers: number): number =>
      projectThroughput({ costs: relayBound, channels, cores: 16, linkGbps: Infinity, relayWorkers }).gbps;
    assert.equal(at(4, 8), Math.round((4 / 2) * GBIT_PER_GIB * 100) / 100);
    assert.equal(at(4, 2), Math.round((2 / 2) * GBIT_PER_GIB * 100) / 100);
  });

  it('refuses hosts without cores or a link of 0', () => {
    assert.throws(
      () => projectThroughput({ costs: TUNNEL, channels: 1, cores: 0, linkGbps: 10 }),
      /cores and channels must be >= 1 and the link > 0, got 0, 1, 10/,
    );
  });
});

describe('checkAgainstPinned', () => {
  it('compares the one-core projection with the pinned measurement', () => {
    const c = checkAgainstPinned(TUNNEL, 1, 3.2);
    assert.equal(c.limit, 'destination cores');
    assert.equal(c.projectedGbps, 3.52);
    assert.equal(c.ratio, 0.91);
  });
});
