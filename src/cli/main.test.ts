import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { main } from './main.js';

function capture(): {
  io: { stdout: PassThrough; stderr: PassThrough };
  out: () => string;
  err: () => string;
} {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  return { io: { stdout, stderr }, out: () => out, err: () => err };
}

describe('vmferry CLI', () => {
  it('prints its version and exits 0', async () => {
    const c = capture();
    const code = await main(['node', 'vmferry', '--version'], c.io);
    assert.equal(code, 0);
    assert.match(c.out(), /^\d+\.\d+\.\d+\n$/);
  });

  it('rejects an unknown command with a non-zero status and says which', async () => {
    const c = capture();
    const code = await main(['node', 'vmferry', 'frobnicate'], c.io);
    assert.notEqual(code, 0);
    assert.match(c.err(), /frobnicate/);
  });
});
