import { GUEST_PAGE_SIZE } from './layout.js';

const MASK64 = (1n << 64n) - 1n;

function splitmix64(x: bigint): bigint {
  let z = (x + 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** The xorshift32 seed of a page at a write generation (mirrors guest/src/pattern.c). */
export function guestPageSeed(page: number, generation: number): number {
  const h = splitmix64((BigInt(page >>> 0) << 32n) | BigInt(generation >>> 0));
  const s = Number(h & 0xffffffffn) ^ Number(h >> 32n);
  return s !== 0 ? s >>> 0 : 0x6d2b79f5;
}

/**
 * The 4096 bytes the guest writes to workload page `page` at write generation
 * `generation` (0 after the initial fill): 1024 little-endian uint32 words of
 * a xorshift32 (13, 17, 5) stream seeded with {@link guestPageSeed}.
 */
export function guestPageContent(page: number, generation: number): Buffer {
  const out = Buffer.alloc(GUEST_PAGE_SIZE);
  let s = guestPageSeed(page, generation);
  for (let i = 0; i < GUEST_PAGE_SIZE; i += 4) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out.writeUInt32LE(s >>> 0, i);
  }
  return out;
}
