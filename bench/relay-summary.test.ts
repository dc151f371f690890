import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  sendPathOf,
  suiteOf,
  suiteVariants,
  summarizeVariant,
  summaryLine,
  type Measured,
} from './relay-summary.js';

const run = (src: number, dst: number, cipher: number, gbps = 5): Measured => ({
  gbps,
  srcCpuPerGiB: src,
  dstCpuPerGiB: dst,
  faultsPerGiB: 1000,
  cipherCpuPerGiB: cipher,
});

describe('relay benchmark variants per suite', () => {
  it('runs the default relay once when neither suites nor variants are given', () => {
    assert.deepEqual(suiteVariants([], []), [{ label: 'default' }]);
  });

  it('keeps the given variants as they are without --suites', () => {
    const given = [{ label: 'a', tuning: { batchWrites: false } }];
    assert.deepEqual(suiteVariants([], given), given);
  });

  it('runs each variant once per suite, with that suite as its only one and its other tuning kept', () => {
    const out = suiteVariants(
      ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'],
      [{ label: 'nobatch', tuning: { batchWrites: false } }],
    );
    assert.deepEqual(out, [
      {
        label: 'nobatch TLS_AES_128_GCM_SHA256',
        tuning: { batchWrites: false, cipherSuites: 'TLS_AES_128_GCM_SHA256' },
      },
      {
        label: 'nobatch TLS_CHACHA20_POLY1305_SHA256',
        tuning: { batchWrites: false, cipherSuites: 'TLS_CHACHA20_POLY1305_SHA256' },
      },
    ]);
  });

  it('labels a suite variant by the suite alone when no variant is given', () => {
    assert.deepEqual(
      suiteVariants(['TLS_AES_256_GCM_SHA384'], []).map((v) => v.label),
      ['TLS_AES_256_GCM_SHA384'],
    );
  });

  it("names the suite the relay negotiates: its list's first, the default list's first otherwise", () => {
    assert.equal(
      suiteOf({ label: 'x', tuning: { cipherSuites: 'TLS_CHACHA20_POLY1305_SHA256' } }),
      'TLS_CHACHA20_POLY1305_SHA256',
    );
    assert.equal(suiteOf({ label: 'x' }), 'TLS_AES_256_GCM_SHA384');
  });
});

describe('relay benchmark summary', () => {
  it('gives the median and range of each figure, and each side against the cipher run by run', () => {
    const s = summarizeVariant('v', 'TLS_AES_256_GCM_SHA384', [
      run(0.7, 1.0, 0.35, 4),
      run(0.6, 0.9, 0.3, 6),
      run(0.9, 1.2, 0.3, 5),
    ]);
    assert.deepEqual(s.gbps, { median: 5, min: 4, max: 6 });
    assert.deepEqual(s.sourceRelayCpuPerGiB, { median: 0.7, min: 0.6, max: 0.9 });
    assert.deepEqual(s.destinationRelayCpuPerGiB, { median: 1, min: 0.9, max: 1.2 });
    assert.deepEqual(s.cipherCpuPerGiB, { median: 0.3, min: 0.3, max: 0.35 });
    // 0.7/0.35 = 2, 0.6/0.3 = 2, 0.9/0.3 = 3: the ratio of each run, not of the medians (0.7/0.3).
    assert.deepEqual(s.sourceVsCipher, { median: 2, min: 2, max: 3 });
    assert.equal(s.runs, 3);
  });

  it('prints one table row per variant', () => {
    const s = summarizeVariant('aes', 'TLS_AES_128_GCM_SHA256', [run(0.64, 0.96, 0.32)]);
    assert.equal(
      summaryLine(s),
      '| aes | 5.00 (5.00-5.00) | 0.64 (0.64-0.64) | 0.96 (0.96-0.96) | 0.320 (0.320-0.320) | 2.00x / 3.00x |',
    );
  });

  it("names a native variant's row and summary by the send path its source relay reported", () => {
    const sealed = { ...run(0.4, 0.6, 0.32), sendPath: 'sealed' as const };
    const s = summarizeVariant('native', 'TLS_AES_256_GCM_SHA384', [sealed, sealed]);
    assert.equal(s.sendPath, 'sealed');
    assert.match(summaryLine(s), /^\| native \(sealed\) \| /);
    const mixed = summarizeVariant('native', 'TLS_AES_256_GCM_SHA384', [
      sealed,
      { ...sealed, sendPath: 'ssl-write' },
    ]);
    assert.equal(mixed.sendPath, 'mixed', 'runs that sent differently are not one send path');
    assert.equal('sendPath' in summarizeVariant('ts', 'TLS_AES_256_GCM_SHA384', [run(0.6, 0.9, 0.3)]), false);
  });

  it('adds the receive path its destination relay reported', () => {
    const both = { ...run(0.4, 0.5, 0.32), sendPath: 'sealed' as const, receivePath: 'opened' as const };
    const s = summarizeVariant('native', 'TLS_AES_256_GCM_SHA384', [both, both]);
    assert.equal(s.receivePath, 'opened');
    assert.match(summaryLine(s), /^\| native \(sealed, opened\) \| /);
    const off = summarizeVariant('native', 'TLS_AES_256_GCM_SHA384', [
      both,
      { ...both, receivePath: 'ssl-read' },
    ]);
    assert.equal(off.receivePath, 'mixed');
  });

  it('takes one send path from what the connections reported', () => {
    assert.equal(sendPathOf([]), undefined);
    assert.equal(sendPathOf([undefined]), undefined);
    assert.equal(sendPathOf(['sealed', undefined, 'sealed']), 'sealed');
    assert.equal(sendPathOf(['sealed', 'ssl-write']), 'mixed');
  });
});
