import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, openSync, writeSync, closeSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { diskIdentity } from './disk-identity.js';

describe('diskIdentity', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmf-diskid-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is the same for two reads of one file and for a byte-identical copy', () => {
    const a = join(dir, 'a.raw');
    truncateSync((writeFileSync(a, ''), a), 8 * 1024 * 1024);
    const b = join(dir, 'b.raw');
    truncateSync((writeFileSync(b, ''), b), 8 * 1024 * 1024);
    assert.deepEqual(diskIdentity(a), diskIdentity(a));
    assert.equal(diskIdentity(a).fingerprint, diskIdentity(b).fingerprint);
    assert.equal(diskIdentity(a).sizeBytes, 8 * 1024 * 1024);
  });

  it('changes when a byte of the first or the last MiB changes, not one in the middle', () => {
    const f = join(dir, 'c.raw');
    writeFileSync(f, '');
    truncateSync(f, 8 * 1024 * 1024);
    const before = diskIdentity(f).fingerprint;
    const poke = (offset: number): void => {
      const fd = openSync(f, 'r+');
      writeSync(fd, Buffer.from([0x5a]), 0, 1, offset);
      closeSync(fd);
    };
    poke(4 * 1024 * 1024);
    assert.equal(diskIdentity(f).fingerprint, before, 'the middle is not sampled');
    poke(8 * 1024 * 1024 - 1);
    const afterLast = diskIdentity(f).fingerprint;
    assert.notEqual(afterLast, before);
    poke(17);
    assert.notEqual(diskIdentity(f).fingerprint, afterLast);
  });

  it('hashes a small file whole', () => {
    const f = join(dir, 'small.raw');
    writeFileSync(f, 'abc');
    assert.deepEqual(diskIdentity(f), {
      path: f,
      sizeBytes: 3,
      fingerprint: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    });
  });
});
