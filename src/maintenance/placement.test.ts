import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseDestination, placeAll, type PlacementCandidate } from './placement.js';

const host = (
  name: string,
  freeMemoryMiB: number,
  extra: Partial<PlacementCandidate> = {},
): PlacementCandidate => ({
  name,
  address: `https://${name}:7700`,
  maintenance: false,
  freeMemoryMiB,
  ...extra,
});

describe('chooseDestination', () => {
  it('picks the host with the most memory left and says why the others were passed over', () => {
    const p = chooseDestination({
      vm: { name: 'web-1', memoryMiB: 512 },
      candidates: [
        host('b', 2048),
        host('c', 4096),
        host('d', 8192, { maintenance: true }),
        host('e', 8192, { unreachable: 'connection refused' }),
      ],
      reservedMiB: new Map(),
    });
    assert.equal(p.destination?.name, 'c');
    assert.deepEqual(p.reasons, [
      "c: chosen, most free memory (4096 MiB before web-1's 512 MiB)",
      'd: in maintenance mode',
      'e: unreachable (connection refused)',
    ]);
  });

  it('counts what the same drain already reserved, so VMs spread', () => {
    const p = chooseDestination({
      vm: { name: 'web-2', memoryMiB: 512 },
      candidates: [host('b', 3000), host('c', 4000)],
      reservedMiB: new Map([['c', 1500]]),
    });
    assert.equal(p.destination?.name, 'b');
  });

  it('skips a host without room, naming the figures, and one that failed a pre-flight check', () => {
    const p = chooseDestination({
      vm: { name: 'db', memoryMiB: 4096 },
      candidates: [host('b', 3000), host('c', 9000)],
      reservedMiB: new Map(),
      preflight: new Map([
        ['b', [{ check: 'memory', ok: false, message: 'ignored here: judged with the reservations' }]],
        ['c', [{ check: 'bridge', ok: false, message: 'bridge br7 does not exist' }]],
      ]),
    });
    assert.equal(p.destination, undefined);
    assert.deepEqual(p.reasons, [
      'b: not enough memory (3000 MiB free after reservations, db needs 4096 MiB)',
      'c: pre-flight bridge: bridge br7 does not exist',
    ]);
  });

  it('never picks an excluded host, even the roomiest', () => {
    const p = chooseDestination({
      vm: { name: 'web-1', memoryMiB: 256 },
      candidates: [host('b', 1000), host('c', 9000)],
      reservedMiB: new Map(),
      exclude: new Set(['c']),
    });
    assert.equal(p.destination?.name, 'b');
  });

  it('breaks ties by name, so placements repeat', () => {
    const p = chooseDestination({
      vm: { name: 'x', memoryMiB: 1 },
      candidates: [host('c', 100), host('b', 100)],
      reservedMiB: new Map(),
    });
    assert.equal(p.destination?.name, 'b');
  });
});

describe('placeAll', () => {
  it('places the largest VMs first and spreads four VMs over two hosts', () => {
    const placements = placeAll(
      [
        { name: 'g1', memoryMiB: 200 },
        { name: 'g2', memoryMiB: 200 },
        { name: 'g3', memoryMiB: 800 },
        { name: 'g4', memoryMiB: 200 },
      ],
      [host('b', 1000), host('c', 1000)],
    );
    assert.deepEqual(
      placements.map((p) => [p.vm, p.destination?.name]),
      [
        ['g3', 'b'],
        ['g1', 'c'],
        ['g2', 'c'],
        ['g4', 'c'],
      ],
    );
  });

  it('leaves a VM unplaced when nothing has room after the others', () => {
    const placements = placeAll(
      [
        { name: 'a1', memoryMiB: 600 },
        { name: 'a2', memoryMiB: 600 },
      ],
      [host('b', 1000)],
    );
    assert.equal(placements[0]?.destination?.name, 'b');
    assert.equal(placements[1]?.destination, undefined);
    assert.match(placements[1]?.reasons[0] ?? '', /^b: not enough memory \(400 MiB free after reservations/);
  });
});
