import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { guestPageContent, guestPageSeed } from './pattern.js';

// Bytes read from a memory-backend-file of a real guest run (mem=256 dirty=64).
const FROM_GUEST = [
  { page: 0, generation: 1, head: '5b9d96d3e55582073abce4eaeb931bd1', tail: '231f1a725c9c320e' },
  { page: 12345, generation: 0, head: 'b26f28077d711b510712add9d1315406', tail: '4da10cf4bf1a8364' },
  { page: 65535, generation: 1, head: '03e55ac33e95a360bcdb8f5240e7f996', tail: '790787fd6d106db0' },
];

describe('guest page content', () => {
  it('matches what the C guest wrote', () => {
    for (const v of FROM_GUEST) {
      const page = guestPageContent(v.page, v.generation);
      assert.equal(page.length, 4096);
      assert.equal(page.subarray(0, 16).toString('hex'), v.head, `page ${v.page} head`);
      assert.equal(page.subarray(4088).toString('hex'), v.tail, `page ${v.page} tail`);
    }
  });

  it('has no zero word and changes with page and generation', () => {
    const a = guestPageContent(7, 0);
    for (let i = 0; i < a.length; i += 4) assert.notEqual(a.readUInt32LE(i), 0);
    assert.notDeepEqual(a, guestPageContent(7, 1));
    assert.notDeepEqual(a, guestPageContent(8, 0));
  });

  it('seeds are non-zero uint32', () => {
    for (let p = 0; p < 1000; p++) {
      const s = guestPageSeed(p, p % 3);
      assert.ok(Number.isInteger(s) && s > 0 && s <= 0xffffffff);
    }
  });
});
