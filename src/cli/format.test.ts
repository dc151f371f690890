import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MigrationReport, MigrationSample } from '../migration/index.js';
import { formatBytes, percentSent, progressLine, reportLines } from './format.js';

const MiB = 1024 * 1024;

const sample: MigrationSample = {
  time: 1_700_000_012_345,
  elapsedMs: 12_345,
  status: 'active',
  transferredBytes: 700 * MiB,
  remainingBytes: 256 * MiB,
  totalBytes: 1024 * MiB,
  dirtyRateBps: 64 * MiB,
  throughputMbps: 2500,
  pass: 3,
  expectedDowntimeMs: 120,
  cpuThrottlePct: 30,
  downtimeLimitMs: 300,
};

const failedReport: MigrationReport = {
  id: 'm-1',
  vm: 'web-1',
  from: 'host-a',
  to: 'host-b',
  status: 'failed',
  transport: 'tunnelled',
  tls: true,
  channels: 1,
  postCopy: false,
  autoConverge: false,
  reasons: ['tunnelled: live_migration_tunnelled = True'],
  bytes: 100 * MiB,
  seconds: 10,
  totalSeconds: 12,
  gbps: 0.08,
  downtimeMs: undefined,
  iterations: 2,
  maxCpuThrottlePct: 0,
  postcopySwitchSeconds: undefined,
  forcedPauseMs: undefined,
  events: ['completion timeout of 10 s reached at 10.1 s: abort'],
  forecast: undefined,
  guest: 'unknown',
  guestDetail: 'the source guest kept running',
  error: 'migration aborted: completion timeout of 10 s reached',
};

describe('CLI formatting', () => {
  it('formats sizes in KiB, MiB and GiB', () => {
    assert.equal(formatBytes(512 * 1024), '512 KiB');
    assert.equal(formatBytes(1.5 * MiB), '1.5 MiB');
    assert.equal(formatBytes(3 * 1024 * MiB), '3.00 GiB');
  });

  it('computes the share of RAM already on the destination, clamped', () => {
    assert.equal(percentSent(sample), 75);
    assert.equal(percentSent({ totalBytes: 0, remainingBytes: 5 }), 0);
    assert.equal(percentSent({ totalBytes: 10, remainingBytes: 20 }), 0);
  });

  it('draws a progress line with bar, percent, throughput, remaining, dirty rate, pass, throttle, elapsed', () => {
    const line = progressLine(sample, 'migrating', 20);
    assert.equal(
      line,
      '[###############.....]  75%  2.50 Gbit/s  remaining 256.0 MiB  dirty 64.0 MiB/s  pass 3  throttle 30%  12.3 s  migrating',
    );
  });

  it('puts the disk copies of a block migration next to the memory: copied, remaining, dirty, in step', () => {
    const disks = [
      {
        disk: 0,
        transferredBytes: 512 * MiB,
        remainingBytes: 512 * MiB,
        totalBytes: 1024 * MiB,
        dirtyBytes: 2 * MiB,
        ready: false,
      },
      {
        disk: 1,
        transferredBytes: 256 * MiB,
        remainingBytes: 0,
        totalBytes: 256 * MiB,
        dirtyBytes: 0,
        ready: true,
      },
    ];
    assert.equal(
      progressLine({ ...sample, disks }, 'copying disks', 20),
      '[###############.....]  75%  2.50 Gbit/s  remaining 256.0 MiB  dirty 64.0 MiB/s  pass 3  throttle 30%  ' +
        'disks 768.0 MiB copied, 512.0 MiB remaining, dirty 2.0 MiB  12.3 s  copying disks',
    );
    const inStep = disks.map((d) => ({ ...d, remainingBytes: 0, dirtyBytes: 0, ready: true }));
    assert.match(
      progressLine({ ...sample, disks: inStep }, 'migrating'),
      /disks 768\.0 MiB copied, 0 KiB remaining, dirty 0 KiB, in step/,
    );
    assert.doesNotMatch(progressLine(sample, 'migrating'), /disks/);
  });

  it('reports a failed migration with its error and the state of the source', () => {
    const report = failedReport;
    const text = reportLines(report).join('\n');
    assert.match(text, /web-1 host-a -> host-b: FAILED/);
    assert.match(text, /tunnelled \+ TLS, 1 channel/);
    assert.match(text, /downtime +n\/a/);
    assert.match(text, /event +completion timeout/);
    assert.match(text, /guest +unknown: the source guest kept running/);
    assert.match(text, /error +migration aborted/);
    assert.match(text, /why +tunnelled: live_migration_tunnelled = True/);
  });

  it('reports what each copied disk took', () => {
    const report = {
      ...failedReport,
      status: 'completed' as const,
      disks: [
        { disk: 0, sync: 'full' as const, bytes: 1024 * MiB },
        { disk: 1, sync: 'top' as const, bytes: 12 * MiB },
      ],
    };
    const text = reportLines(report).join('\n');
    assert.match(text, /disk 0 +1\.00 GiB copied \(whole disk\)/);
    assert.match(text, /disk 1 +12\.0 MiB copied \(top image only\)/);
  });
});
