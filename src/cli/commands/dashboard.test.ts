import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runMain } from '../_run-main.js';

describe('vmferry dashboard', () => {
  it('refuses a non-loopback --listen before anything else, saying why and what to do', async () => {
    const r = await runMain('dashboard', '--listen', '0.0.0.0:8080');
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      'vmferry: error: the dashboard listens on loopback only, not on 0.0.0.0: it acts with your certificate and has no login of its own\n' +
        'vmferry: hint: use --listen 127.0.0.1:PORT and reach it from elsewhere through an SSH tunnel (ssh -L)\n',
    );
  });

  it('refuses an interval it cannot keep', async () => {
    const r = await runMain('dashboard', '--interval-ms', '10');
    assert.equal(r.code, 1);
    assert.match(r.err, /^vmferry: error: --interval-ms must be from 200 to 60000, got "10"\n/);
  });
});
