import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runMain } from './_run-main.js';

describe('vmferry CLI', () => {
  it('prints its version and exits 0', async () => {
    const r = await runMain('--version');
    assert.equal(r.code, 0);
    assert.match(r.out, /^\d+\.\d+\.\d+\n$/);
  });

  it('rejects an unknown command with a non-zero status and says which', async () => {
    const r = await runMain('frobnicate');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /frobnicate/);
  });

  it('prints an error with its hint and no stack for bad input', async () => {
    const r = await runMain('vm', 'list');
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      /^vmferry: error: no client certificate: pass --tls-dir DIR or set VMFERRY_TLS_DIR\nvmferry: hint: /,
    );
    assert.doesNotMatch(r.err, /\n\s+at /);
  });
});
