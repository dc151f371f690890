import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostSummary, MigrationRecord, VmView } from '../agent/index.js';
import type { MigrationSample } from '../migration/index.js';
import { dashboardSnapshot, type AgentReading } from './snapshot.js';
import { EXAMPLE_SETTINGS } from '../policy/settings.fixture.js';

const MiB = 1024 * 1024;
const NOW = 1_700_000_100_000;

function host(name: string): HostSummary {
  return { name, accelerator: 'tcg', qemuVersion: '7.2.22' } as HostSummary;
}

function vm(name: string, health: string, migrationId?: string): VmView {
  return {
    name,
    state: migrationId === undefined ? 'running' : 'migrating',
    memoryMiB: 136,
    migrationId,
    guest: { health, reason: `${health} because` },
  } as VmView;
}

function record(
  over: Partial<MigrationRecord> & Pick<MigrationRecord, 'id' | 'role' | 'state'>,
): MigrationRecord {
  return {
    vm: 'web-1',
    peer: 'https://198.18.0.2:7700',
    transport: 'native',
    plan: EXAMPLE_SETTINGS,
    error: null,
    report: null,
    startedAt: NOW - 10_000,
    updatedAt: NOW - 1000,
    finishedAt: null,
    ...over,
  };
}

const sample = {
  totalBytes: 200 * MiB,
  remainingBytes: 50 * MiB,
  throughputMbps: 1250,
  pass: 2,
} as MigrationSample;

function readings(): { address: string; reading: AgentReading }[] {
  return [
    {
      address: 'unix:/a/agent.sock',
      reading: {
        host: host('host-a'),
        vms: [vm('web-1', 'ok', 'm-run')],
        migrations: [
          record({ id: 'm-run', role: 'source', state: 'migrating' }),
          record({
            id: 'm-old',
            role: 'source',
            state: 'completed',
            finishedAt: NOW - 60_000,
            report: { from: 'host-a', to: 'host-b', gbps: 2.5, downtimeMs: 40 },
          }),
          record({ id: 'm-queued', vm: 'db-1', role: 'source', state: 'pending', startedAt: NOW - 1000 }),
        ],
        live: { 'm-run': { state: 'migrating', sample } },
        error: undefined,
      },
    },
    {
      address: 'unix:/b/agent.sock',
      reading: {
        host: { ...host('host-b'), maintenance: true },
        vms: [vm('cache', 'corrupt')],
        migrations: [
          record({ id: 'm-run', role: 'destination', state: 'migrating', peer: 'host-a' }),
          record({ id: 'm-in', vm: 'api', role: 'destination', state: 'migrating', peer: 'host-c' }),
        ],
        live: {},
        error: undefined,
      },
    },
    {
      address: 'https://198.18.0.3:7700',
      reading: {
        host: undefined,
        vms: undefined,
        migrations: undefined,
        live: {},
        error: 'cannot reach agent https://198.18.0.3:7700: connect ECONNREFUSED',
      },
    },
  ];
}

describe('dashboard snapshot', () => {
  it('lists every host with its VMs and guest health; an unreachable one says why', () => {
    const s = dashboardSnapshot(NOW, readings());
    assert.deepEqual(
      s.hosts.map((h) => [h.key, h.name, h.reachable, h.vms.map((v) => `${v.name}:${v.health}`)]),
      [
        [0, 'host-a', true, ['web-1:ok']],
        [1, 'host-b', true, ['cache:corrupt']],
        [2, 'https://198.18.0.3:7700', false, []],
      ],
    );
    assert.equal(s.hosts[2]?.error, 'cannot reach agent https://198.18.0.3:7700: connect ECONNREFUSED');
    assert.equal(s.hosts[1]?.vms[0]?.healthReason, 'corrupt because');
    assert.deepEqual(
      s.hosts.map((h) => h.maintenance),
      [false, true, false],
      'the host in maintenance mode says so',
    );
    const incoming = dashboardSnapshot(NOW, [
      {
        address: 'b',
        reading: { ...readings()[1]!.reading, vms: [{ ...vm('api', 'stalled'), state: 'incoming' }] },
      },
    ]);
    assert.equal(
      incoming.hosts[0]?.vms[0]?.health,
      'not yet',
      "an incoming copy's silent guest is no verdict",
    );
  });

  it('shows a migration both ends know once, from its source, with live progress and controls', () => {
    const s = dashboardSnapshot(NOW, readings());
    assert.deepEqual(
      s.active.map((m) => [m.id, m.hostKey, m.from, m.to, m.controllable, m.queued]),
      [
        ['m-run', 0, 'host-a', 'https://198.18.0.2:7700', true, false],
        ['m-in', 1, 'host-c', 'host-b', false, false],
        ['m-queued', 0, 'host-a', 'https://198.18.0.2:7700', true, true],
      ],
    );
    const run = s.active[0];
    assert.equal(run?.percent, 75);
    assert.equal(run?.throughputGbps, 1.25);
    assert.equal(run?.remainingBytes, 50 * MiB);
    assert.equal(run?.pass, 2);
    assert.equal(run?.elapsedSeconds, 10);
    assert.equal(s.active[1]?.percent, null, 'no live figures on the destination side');
  });

  it("lists finished migrations newest first with the report's figures and a chart link", () => {
    const s = dashboardSnapshot(NOW, readings());
    assert.deepEqual(s.finished, [
      {
        hostKey: 0,
        id: 'm-old',
        vm: 'web-1',
        from: 'host-a',
        to: 'host-b',
        state: 'completed',
        finishedAt: NOW - 60_000,
        gbps: 2.5,
        downtimeMs: 40,
        chartUrl: '/charts/0/m-old.svg',
      },
    ]);
  });
});
