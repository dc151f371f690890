import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkConfig, optionsFrom, type OptionValues, type ResolvedOptions } from '../config/index.js';
import { PlanError } from '../errors.js';
import { FULL_CAPABILITIES, type HostCapabilities } from '../qemu/index.js';
import { UNLIMITED_BANDWIDTH_BYTES } from './decide-limits.js';
import { checkMigrationSettings } from './check-settings.js';
import { migrationSettings, planMigration, type MigrationPlan } from './migration-plan.js';
import type { PlanInput } from './plan-input.js';

const NO_TLS: HostCapabilities = { ...FULL_CAPABILITIES, nativeTls: false };

function plan(values: Partial<OptionValues>, more: Partial<Omit<PlanInput, 'options'>> = {}): MigrationPlan {
  const p = planMigration({
    options: optionsFrom(values, '/etc/nova/nova.conf'),
    kind: 'live',
    memoryMiB: 4096,
    source: FULL_CAPABILITIES,
    destination: FULL_CAPABILITIES,
    ...more,
  });
  assertEveryDecisionExplained(p);
  return p;
}

function fromFile(text: string): ResolvedOptions {
  const c = checkConfig(text, '/etc/nova/nova.conf');
  assert.ok(c.options && c.ok, c.errors.map((e) => e.message).join('\n'));
  return c.options;
}

function reason(p: MigrationPlan, decision: string): string {
  return p.reasons
    .filter((r) => r.decision === decision)
    .map((r) => r.message)
    .join(' | ');
}

/** Every decision has a reason, and each reason names what drove it. */
function assertEveryDecisionExplained(p: MigrationPlan): void {
  for (const d of [
    'transport',
    'tls',
    'channels',
    'postCopy',
    'autoConverge',
    'downtimeSteps',
    'completionTimeout',
    'timeoutAction',
    'bandwidth',
  ]) {
    assert.ok(
      p.reasons.some((r) => r.decision === d),
      `no reason for ${d}`,
    );
  }
  for (const r of p.reasons) {
    if (r.decision === 'flags' || r.decision === 'dataSize') continue;
    assert.ok(
      r.option !== undefined || r.capability !== undefined || /override/.test(r.message),
      `reason without option or capability: ${JSON.stringify(r)}`,
    );
  }
}

function planError(fn: () => unknown): PlanError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PlanError, String(err));
    return err;
  }
  assert.fail('expected a PlanError');
}

describe('planMigration: transport and TLS (live_migration_tunnelled tri-state)', () => {
  it('unset, no figures: the benchmarked default for QEMU 7.2 (the tunnel), citing the benchmark', () => {
    const v72 = { ...FULL_CAPABILITIES, qemuVersion: '7.2.22' };
    const p = plan({}, { source: v72, destination: v72 });
    assert.deepEqual([p.transport, p.tls, p.encryption], ['tunnelled', true, 'agent-tls']);
    const r = p.reasons.find((x) => x.decision === 'transport');
    assert.equal(r?.capability, 'source.nativeTls,destination.nativeTls');
    assert.equal(r?.option, 'libvirt.live_migration_tunnelled');
    assert.match(
      r?.message ?? '',
      /^tunnelled: libvirt.live_migration_tunnelled = unset \(default\), both hosts can do either secure transport, no figures for this pair of hosts \(vmferry host calibrate --peer measures them\); the default for QEMU 7\.2\.22: vmferry's benchmark on QEMU 7\.2: tunnel 4\.36 Gbit\/s vs native TLS 1\.37 Gbit\/s with a core per host \(npm run bench -- --pin, 2026-12-01, native relay/,
    );
    assert.ok(p.flags.includes('VIR_MIGRATE_TUNNELLED') && !p.flags.includes('VIR_MIGRATE_TLS'));
  });

  it('unset, with calibration figures: the faster secure transport, citing the figures', () => {
    const calibration = {
      nativeTls: { gbps: 2.6, cpuSecondsPerGiB: 2.3, date: '2026-11-30', migrations: 1 },
      tunnelled: { gbps: 3.2, cpuSecondsPerGiB: 1.3, date: '2026-11-30', migrations: 1 },
    };
    const t = plan({}, { transportFigures: { calibration } });
    assert.deepEqual([t.transport, t.encryption], ['tunnelled', 'agent-tls']);
    assert.equal(
      reason(t, 'transport'),
      'tunnelled: libvirt.live_migration_tunnelled = unset (default), both hosts can do either secure transport and ' +
        'it was faster to this host: tunnel 3.2 Gbit/s vs native TLS 2.6 Gbit/s, calibrated 2026-11-30',
    );
    const faster = { ...calibration, nativeTls: { ...calibration.nativeTls, gbps: 4.1 } };
    const n = plan({}, { transportFigures: { calibration: faster } });
    assert.deepEqual([n.transport, n.encryption], ['native', 'qemu-tls']);
    assert.match(
      reason(n, 'transport'),
      /^native with QEMU TLS: .*faster to this host: native TLS 4\.1 Gbit\/s vs tunnel 3\.2 Gbit\/s, calibrated 2026-11-30$/,
    );
    assert.ok(n.flags.includes('VIR_MIGRATE_TLS'));
  });

  it('unset, figures from past migrations: compared when the calibration lacks a transport', () => {
    const p = plan(
      {},
      {
        transportFigures: {
          calibration: { tunnelled: { gbps: 3.0, date: '2026-11-29', migrations: 1 } },
          migrations: {
            nativeTls: { gbps: 2.5, date: '2026-11-28', migrations: 3 },
            tunnelled: { gbps: 2.0, date: '2026-11-27', migrations: 2 },
          },
        },
      },
    );
    assert.equal(p.transport, 'native');
    assert.match(
      reason(p, 'transport'),
      /native TLS 2\.5 Gbit\/s \(median of 3 migrations to this host, last 2026-11-28\) vs tunnel 2\.0 Gbit\/s \(median of 2 migrations to this host, last 2026-11-27\)$/,
    );
  });

  it('unset, figures for one transport only: the benchmarked default, saying which figures there were', () => {
    const p = plan(
      {},
      { transportFigures: { migrations: { nativeTls: { gbps: 2.5, date: '2026-11-28', migrations: 1 } } } },
    );
    assert.equal(p.transport, 'tunnelled');
    assert.match(
      reason(p, 'transport'),
      /figures for only the native TLS to this host \(2\.5 Gbit\/s, one migration to this host, last 2026-11-28\); the default for QEMU version unknown/,
    );
  });

  it('unset with live_migration_with_native_tls = True: native TLS, whatever the figures', () => {
    const p = plan(
      { 'libvirt.live_migration_with_native_tls': true },
      {
        transportFigures: {
          calibration: {
            nativeTls: { gbps: 1, date: '2026-11-30', migrations: 1 },
            tunnelled: { gbps: 3, date: '2026-11-30', migrations: 1 },
          },
        },
      },
    );
    assert.deepEqual([p.transport, p.encryption], ['native', 'qemu-tls']);
    assert.equal(
      p.reasons.find((x) => x.decision === 'transport')?.option,
      'libvirt.live_migration_with_native_tls',
    );
  });

  it('True and False still force the transport against the figures', () => {
    const transportFigures = {
      calibration: {
        nativeTls: { gbps: 5, date: '2026-11-30', migrations: 1 },
        tunnelled: { gbps: 1, date: '2026-11-30', migrations: 1 },
      },
    };
    assert.equal(
      plan({ 'libvirt.live_migration_tunnelled': true }, { transportFigures }).transport,
      'tunnelled',
    );
    const slow = {
      calibration: {
        ...transportFigures.calibration,
        nativeTls: { gbps: 0.5, date: '2026-11-30', migrations: 1 },
      },
    };
    assert.equal(
      plan({ 'libvirt.live_migration_tunnelled': false }, { transportFigures: slow }).transport,
      'native',
    );
  });

  it('unset: tunnelled when a host cannot do QEMU TLS, never clear text', () => {
    const p = plan({}, { destination: NO_TLS });
    assert.deepEqual([p.transport, p.tls, p.encryption], ['tunnelled', true, 'agent-tls']);
    const r = p.reasons.find((x) => x.decision === 'transport');
    assert.equal(r?.capability, 'destination.nativeTls');
    assert.match(r?.message ?? '', /destination host cannot do QEMU TLS/);
    assert.ok(p.flags.includes('VIR_MIGRATE_TUNNELLED') && !p.flags.includes('VIR_MIGRATE_TLS'));
  });

  it('True: tunnelled even when both hosts could do native TLS', () => {
    const p = plan({ 'libvirt.live_migration_tunnelled': true });
    assert.equal(p.transport, 'tunnelled');
    assert.equal(
      p.reasons.find((x) => x.decision === 'transport')?.option,
      'libvirt.live_migration_tunnelled',
    );
    assert.match(reason(p, 'transport'), /live_migration_tunnelled = true \(\/etc\/nova\/nova\.conf:0\)/);
  });

  it('False with native TLS: QEMU TLS, or a PlanError naming the host that cannot', () => {
    const values = {
      'libvirt.live_migration_tunnelled': false,
      'libvirt.live_migration_with_native_tls': true,
    } as const;
    assert.equal(plan(values).encryption, 'qemu-tls');
    const err = planError(() => plan(values, { source: NO_TLS }));
    assert.match(err.message, /the source host cannot do QEMU TLS; vmferry will not fall back to clear text/);
    assert.match(err.hint ?? '', /permit_cleartext/);
  });

  it('False without native TLS: still QEMU TLS when both hosts can; refused when they cannot', () => {
    const p = plan({ 'libvirt.live_migration_tunnelled': false });
    assert.deepEqual([p.transport, p.encryption], ['native', 'qemu-tls']);
    assert.match(reason(p, 'tls'), /does not send memory in clear text/);
    planError(() => plan({ 'libvirt.live_migration_tunnelled': false }, { destination: NO_TLS }));
  });

  it('clear text only when [vmferry] permit_cleartext says so, and loudly', () => {
    const p = plan(
      { 'libvirt.live_migration_tunnelled': false, 'vmferry.permit_cleartext': true },
      { source: NO_TLS, destination: NO_TLS },
    );
    assert.deepEqual([p.transport, p.tls, p.encryption], ['native', false, 'none']);
    assert.match(reason(p, 'tls'), /^CLEAR TEXT: the source and destination host/);
  });

  it('follows a legacy list: TUNNELLED in the list means tunnelled, its absence native', () => {
    const withTunnel = fromFile('[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_TUNNELLED\n');
    const p = planMigration({
      options: withTunnel,
      kind: 'live',
      memoryMiB: 1024,
      source: FULL_CAPABILITIES,
      destination: FULL_CAPABILITIES,
    });
    assert.equal(p.transport, 'tunnelled');
    assert.match(
      reason(p, 'transport'),
      /libvirt.live_migration_flag has VIR_MIGRATE_TUNNELLED \(\/etc\/nova\/nova.conf:2\)/,
    );
    const without = fromFile('[libvirt]\nlive_migration_flag = VIR_MIGRATE_LIVE\n');
    const q = planMigration({
      options: without,
      kind: 'live',
      memoryMiB: 1024,
      source: FULL_CAPABILITIES,
      destination: FULL_CAPABILITIES,
    });
    assert.equal(q.transport, 'native');
  });

  it('refuses a configuration nova refuses (tunnelled + native TLS)', () => {
    const err = planError(() =>
      plan({ 'libvirt.live_migration_tunnelled': true, 'libvirt.live_migration_with_native_tls': true }),
    );
    assert.match(err.message, /live_migration_tunnelled.*live_migration_with_native_tls/);
  });

  it('honours a transport override', () => {
    const p = plan({}, { overrides: { transport: 'tunnelled' } });
    assert.equal(p.transport, 'tunnelled');
    assert.match(reason(p, 'transport'), /override/);
  });

  it("names each host's tunnel relay, or the one a migration asks for at both ends (tunnelled only)", () => {
    const native = {
      kind: 'native',
      reason: 'the native relay ([vmferry] tunnel_relay = auto, and it is built)',
    } as const;
    const hosts = { source: { ...FULL_CAPABILITIES, tunnelRelay: native }, destination: FULL_CAPABILITIES };
    const p = plan({}, { ...hosts, overrides: { transport: 'tunnelled' } });
    assert.equal(p.relay, undefined);
    assert.equal(
      reason(p, 'tunnel'),
      'relay: source native, the native relay ([vmferry] tunnel_relay = auto, and it is built); destination node, the TypeScript relay (an agent that does not say)',
    );
    const q = plan({}, { ...hosts, overrides: { transport: 'tunnelled', relay: 'node' } });
    assert.equal(q.relay, 'node');
    assert.equal(reason(q, 'tunnel'), 'relay: node at both ends (override)');
    const settings = migrationSettings(q);
    assert.equal(settings.relay, 'node');
    assert.deepEqual(checkMigrationSettings(settings), settings);
    const n = plan({}, { ...hosts, overrides: { transport: 'native', relay: 'native' } });
    assert.equal(n.relay, undefined, 'no relay for a native stream');
    assert.equal(reason(n, 'tunnel'), '');
  });
});

describe('planMigration: channels, post-copy, auto-converge', () => {
  it("uses vmferry's default 4 multifd channels, or 1 when a host has no multifd", () => {
    const p = plan({});
    assert.equal(p.channels, 4);
    assert.ok(p.flags.includes('VIR_MIGRATE_PARALLEL'));
    const q = plan({}, { source: { ...FULL_CAPABILITIES, multifd: false } });
    assert.equal(q.channels, 1);
    assert.ok(!q.flags.includes('VIR_MIGRATE_PARALLEL'));
    assert.equal(q.reasons.find((r) => r.decision === 'channels')?.capability, 'source.multifd');
  });

  it('reads live_migration_parallel_connections when [vmferry] channels is not set', () => {
    assert.equal(plan({ 'libvirt.live_migration_parallel_connections': 6 }).channels, 6);
    assert.equal(
      plan({ 'libvirt.live_migration_parallel_connections': 6, 'vmferry.channels': 2 }).channels,
      2,
    );
  });

  it('post-copy wins over default channels on the tunnel, and over auto-converge', () => {
    const p = plan({
      'libvirt.live_migration_tunnelled': true,
      'libvirt.live_migration_permit_post_copy': true,
      'libvirt.live_migration_permit_auto_converge': true,
    });
    assert.deepEqual([p.postCopy, p.channels, p.autoConverge], [true, 1, false]);
    assert.match(
      reason(p, 'channels'),
      /cannot combine it with multifd; the channel count was only vmferry's default/,
    );
    assert.match(reason(p, 'autoConverge'), /post-copy is used and wins over auto-converge/);
    assert.ok(p.flags.includes('VIR_MIGRATE_POSTCOPY') && !p.flags.includes('VIR_MIGRATE_AUTO_CONVERGE'));
    assert.ok(!p.flags.includes('VIR_MIGRATE_PARALLEL'));
  });

  it('explicit channels win over post-copy, and auto-converge then applies', () => {
    const p = plan({
      'libvirt.live_migration_tunnelled': true,
      'libvirt.live_migration_permit_post_copy': true,
      'libvirt.live_migration_permit_auto_converge': true,
      'vmferry.channels': 8,
    });
    assert.deepEqual([p.postCopy, p.channels, p.autoConverge], [false, 8, true]);
    assert.equal(p.reasons.find((r) => r.decision === 'postCopy')?.option, 'vmferry.channels');
    assert.ok(p.flags.includes('VIR_MIGRATE_AUTO_CONVERGE') && !p.flags.includes('VIR_MIGRATE_POSTCOPY'));
  });

  it('refuses post-copy over QEMU TLS', () => {
    const p = plan({
      'libvirt.live_migration_permit_post_copy': true,
      'libvirt.live_migration_with_native_tls': true,
    });
    assert.equal(p.encryption, 'qemu-tls');
    assert.equal(p.postCopy, false);
    assert.match(reason(p, 'postCopy'), /QEMU TLS.*stall/);
  });

  it('refuses post-copy for block migration and where a host lacks it', () => {
    const tunnel = {
      'libvirt.live_migration_tunnelled': true,
      'libvirt.live_migration_permit_post_copy': true,
    } as const;
    assert.equal(plan(tunnel, { kind: 'block', disksGiB: [20] }).postCopy, false);
    const q = plan(tunnel, { destination: { ...FULL_CAPABILITIES, postcopy: false } });
    assert.equal(q.postCopy, false);
    assert.equal(q.reasons.find((r) => r.decision === 'postCopy')?.capability, 'destination.postcopy');
  });

  it('refuses post-copy when the bandwidth cap would leave the VM exposed too long', () => {
    const values = {
      'libvirt.live_migration_tunnelled': true,
      'libvirt.live_migration_permit_post_copy': true,
      'libvirt.live_migration_bandwidth': 10,
    } as const;
    const p = plan(values, { memoryMiB: 4096 });
    assert.equal(p.postCopy, false);
    assert.match(
      reason(p, 'postCopy'),
      /410 s to send after the switch, more than vmferry.postcopy_max_exposure = 120/,
    );
    assert.equal(
      plan({ ...values, 'libvirt.live_migration_bandwidth': 100 }, { memoryMiB: 4096 }).postCopy,
      true,
    );
  });

  it('turns an unsafe post-copy override into a PlanError', () => {
    const nativeTls = { 'libvirt.live_migration_with_native_tls': true } as const;
    const err = planError(() => plan(nativeTls, { overrides: { postCopy: true } }));
    assert.match(err.message, /post-copy was requested but cannot be used safely/);
  });

  it('needs the source to throttle for auto-converge', () => {
    const p = plan(
      { 'libvirt.live_migration_permit_auto_converge': true },
      { source: { ...FULL_CAPABILITIES, autoConverge: false } },
    );
    assert.equal(p.autoConverge, false);
    assert.equal(p.reasons.find((r) => r.decision === 'autoConverge')?.capability, 'source.autoConverge');
  });
});

describe('planMigration: schedule, timeouts, bandwidth', () => {
  it("uses nova's downtime steps and completion timeout on the data size", () => {
    const p = plan({}, { memoryMiB: 3000 });
    assert.equal(p.dataGiB, 2.9296875);
    assert.deepEqual(p.downtimeSteps[0], [0, 50]);
    assert.deepEqual(p.downtimeSteps[1], [219, 95]);
    assert.deepEqual(p.downtimeSteps.at(-1), [2190, 500]);
    assert.equal(p.completionTimeoutSeconds, 2343);
    assert.equal(p.timeoutAction, 'abort');
    assert.match(reason(p, 'timeoutAction'), /keeps running on the source/);
  });

  it('counts block migration disks in the schedule', () => {
    const p = plan(
      { 'libvirt.live_migration_completion_timeout': 100 },
      { kind: 'block', memoryMiB: 1024, disksGiB: [10] },
    );
    assert.equal(p.dataGiB, 12);
    assert.equal(p.completionTimeoutSeconds, 1200);
    assert.ok(p.flags.includes('VIR_MIGRATE_NON_SHARED_INC'));
  });

  it('explains force_complete with and without post-copy, and no timeout', () => {
    const fc = { 'libvirt.live_migration_timeout_action': 'force_complete' } as const;
    assert.match(reason(plan(fc), 'timeoutAction'), /pause the guest/);
    const pc = plan({
      ...fc,
      'libvirt.live_migration_tunnelled': true,
      'libvirt.live_migration_permit_post_copy': true,
    });
    assert.match(reason(pc, 'timeoutAction'), /switch to post-copy/);
    const none = plan({ ...fc, 'libvirt.live_migration_completion_timeout': 0 });
    assert.equal(none.completionTimeoutSeconds, 0);
    assert.match(reason(none, 'timeoutAction'), /never triggers/);
  });

  it('never leaves QEMU at its default bandwidth cap by accident', () => {
    const p = plan({});
    assert.equal(p.bandwidthMiBps, 0);
    assert.equal(p.qemuMaxBandwidthBytes, UNLIMITED_BANDWIDTH_BYTES);
    assert.match(reason(p, 'bandwidth'), /128 MiB\/s/);
    assert.equal(plan({ 'libvirt.live_migration_bandwidth': 100 }).qemuMaxBandwidthBytes, 100 * 1024 * 1024);
  });

  it('passes the stall timeout through', () => {
    assert.equal(plan({ 'vmferry.stall_timeout': 60 }).stallTimeoutSeconds, 60);
  });

  it('rejects bad input early with the field and value', () => {
    assert.throws(() => plan({}, { memoryMiB: 0 }), /memoryMiB must be a number > 0, got 0/);
    assert.throws(
      () => plan({}, { overrides: { channels: 0 } }),
      /channels must be a whole number from 1 to 255, got 0/,
    );
  });
});

describe('planMigration: the per-migration tls override', () => {
  it('clear text only when asked for and permitted by [vmferry] permit_cleartext', () => {
    const p = plan({ 'vmferry.permit_cleartext': true }, { overrides: { transport: 'native', tls: false } });
    assert.equal(p.tls, false);
    assert.equal(p.encryption, 'none');
    assert.ok(
      p.reasons.some((r) => r.decision === 'tls' && /CLEAR TEXT: requested .*override/.test(r.message)),
    );
  });

  it('tls: false alone means native in clear text (when permitted)', () => {
    const p = plan({ 'vmferry.permit_cleartext': true }, { overrides: { tls: false } });
    assert.equal(p.transport, 'native');
    assert.equal(p.encryption, 'none');
  });

  it('refuses clear text without permit_cleartext, and for the tunnel whatever the options', () => {
    assert.match(
      planError(() => plan({}, { overrides: { transport: 'native', tls: false } })).message,
      /clear text was requested/,
    );
    assert.match(
      planError(() =>
        plan({ 'vmferry.permit_cleartext': true }, { overrides: { transport: 'tunnelled', tls: false } }),
      ).message,
      /always encrypted/,
    );
  });

  it('tls: true never falls back to clear text, even where permit_cleartext would allow it', () => {
    const noTls = { ...FULL_CAPABILITIES, nativeTls: false };
    planError(() =>
      plan(
        { 'vmferry.permit_cleartext': true },
        { destination: noTls, overrides: { transport: 'native', tls: true } },
      ),
    );
  });
});

describe('planMigration: channels sized to the hosts', () => {
  it('the default channel count shrinks to one per 2 CPUs of the smaller host, and says why', () => {
    const small = { ...FULL_CAPABILITIES, cpus: 2 };
    const p = plan({}, { source: { ...FULL_CAPABILITIES, cpus: 64 }, destination: small });
    assert.equal(p.channels, 1);
    assert.ok(p.reasons.some((r) => r.decision === 'channels' && /2 CPUs/.test(r.message)));
    assert.equal(
      plan(
        {},
        { source: { ...FULL_CAPABILITIES, cpus: 16 }, destination: { ...FULL_CAPABILITIES, cpus: 16 } },
      ).channels,
      4,
    );
  });

  it('an explicit channel count is kept whatever the CPUs', () => {
    const small = { ...FULL_CAPABILITIES, cpus: 2 };
    assert.equal(plan({ 'vmferry.channels': 4 }, { source: small, destination: small }).channels, 4);
    assert.equal(plan({}, { source: small, destination: small, overrides: { channels: 3 } }).channels, 3);
  });
});

describe('planMigration: the other per-migration overrides', () => {
  const tunnelled = { 'libvirt.live_migration_tunnelled': true } as const;

  it('decides timeouts, stall detection and the naive tunnel, each explained as an override', () => {
    const p = plan(tunnelled, {
      overrides: {
        completionTimeoutSeconds: 5,
        timeoutAction: 'force_complete',
        stallSeconds: 7,
        tunnel: 'naive',
      },
    });
    assert.deepEqual(
      [p.completionTimeoutSeconds, p.timeoutAction, p.stallTimeoutSeconds, p.tunnel, p.channels],
      [5, 'force_complete', 7, 'naive', 1],
    );
    assert.match(reason(p, 'completionTimeout'), /^5 s: requested for this migration \(override\)$/);
    assert.match(reason(p, 'timeoutAction'), /pause the guest.*\(override\)$/);
    assert.match(reason(p, 'stallTimeout'), /^7 s .*\(override\)$/);
    assert.match(reason(p, 'tunnel'), /naive tunnel: one connection/);
    assert.match(reason(p, 'channels'), /naive tunnel carries one connection/);
  });

  it('explains the relay workers of the source agent for the tunnel, not for native', () => {
    const small = { ...FULL_CAPABILITIES, cpus: 4 };
    const p = plan(tunnelled, { source: small, destination: small });
    assert.equal(p.relayWorkers, 2);
    assert.match(reason(p, 'relayWorkers'), /one per 2 of the host's 4 CPUs/);
    assert.equal(plan({ 'vmferry.workers': 3, ...tunnelled }, { source: small }).relayWorkers, 3);
    const native = { 'libvirt.live_migration_tunnelled': false } as const;
    assert.equal(plan(native, { source: small, destination: small }).relayWorkers, undefined);
  });

  it('refuses an override of the wrong kind, naming it', () => {
    const bad = (overrides: Record<string, unknown>): unknown => plan({}, { overrides });
    assert.throws(() => bad({ transport: 'carrier-pigeon' }), /transport must be native or tunnelled/);
    assert.throws(() => bad({ timeoutAction: 'panic' }), /timeoutAction must be abort or force_complete/);
    assert.throws(() => bad({ stallSeconds: -1 }), /stallSeconds must be a whole number >= 0, got -1/);
    assert.throws(() => bad({ postCopy: 'yes' }), /postCopy must be true or false, got "yes"/);
  });
});

describe('a plan made with the VM disks', () => {
  const GiB = 1024 ** 3;
  const disks = {
    mode: 'all' as const,
    modeReason: { message: 'asked for with --block (override)' },
    destinationHost: 'host-b',
    disks: [
      {
        disk: 0,
        storage: 'local' as const,
        path: 'w/d.qcow2',
        format: 'qcow2' as const,
        virtualSize: 20 * GiB,
      },
    ],
    destination: [{ disk: 0, exists: false, sameFile: false, why: 'no file there' }],
  };

  it('is a block migration when a disk is copied: disks count in the data size, no post-copy, NON_SHARED_DISK', () => {
    const p = plan({ 'libvirt.live_migration_permit_post_copy': true }, { disks });
    assert.equal(p.kind, 'block');
    assert.equal(p.dataGiB, 4 + 20);
    assert.equal(p.postCopy, false);
    assert.ok(
      p.flags.includes('VIR_MIGRATE_NON_SHARED_DISK') && !p.flags.includes('VIR_MIGRATE_NON_SHARED_INC'),
    );
    assert.deepEqual(
      p.disks?.map((d) => [d.action, d.sync]),
      [['copy', 'full']],
    );
    assert.match(reason(p, 'disks'), /disk 0 \(w\/d\.qcow2, local\): copied whole/);
  });

  it('is a live migration when every disk is shared', () => {
    const p = plan(
      {},
      {
        kind: 'block',
        disks: {
          ...disks,
          mode: 'auto',
          destination: [{ disk: 0, exists: true, sameFile: true, why: 'probe seen' }],
        },
      },
    );
    assert.equal(p.kind, 'live');
    assert.equal(p.dataGiB, 4);
    assert.deepEqual(
      p.disks?.map((d) => d.action),
      ['shared'],
    );
  });
});

describe("a block migration under nova's flags", () => {
  const GiB = 1024 ** 3;
  const copy = {
    mode: 'all' as const,
    modeReason: { message: 'asked for with --block (override)' },
    destinationHost: 'host-b',
    disks: [
      { disk: 0, storage: 'local' as const, path: 'w/d.raw', format: 'raw' as const, virtualSize: 2 * GiB },
    ],
    destination: [{ disk: 0, exists: false, sameFile: false, why: 'no file there' }],
  };
  const planOf = (options: ResolvedOptions, more: Partial<Omit<PlanInput, 'options'>> = {}): MigrationPlan =>
    planMigration({
      options,
      kind: 'live',
      memoryMiB: 1024,
      source: FULL_CAPABILITIES,
      destination: FULL_CAPABILITIES,
      ...more,
    });

  it('reads block_migration_flag, not live_migration_flag, once a disk is copied', () => {
    const options = fromFile(
      '[libvirt]\n' +
        'live_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_UNDEFINE_SOURCE\n' +
        'block_migration_flag = VIR_MIGRATE_LIVE, VIR_MIGRATE_PEER2PEER, VIR_MIGRATE_UNDEFINE_SOURCE, VIR_MIGRATE_TUNNELLED, VIR_MIGRATE_NON_SHARED_INC\n',
    );
    const live = planOf(options);
    assert.equal(live.transport, 'native');
    const block = planOf(options, { disks: copy });
    assert.equal(block.kind, 'block');
    assert.equal(block.transport, 'tunnelled');
    assert.match(reason(block, 'transport'), /libvirt\.block_migration_flag has VIR_MIGRATE_TUNNELLED/);
    assert.match(
      reason(block, 'transport'),
      /block migration through the tunnel: .*relay the disk stream too/,
    );
    assert.match(reason(block, 'flags'), /^nova 13 rules on libvirt\.block_migration_flag/);
    assert.ok(block.flags.includes('VIR_MIGRATE_NON_SHARED_DISK'), block.flags.join(','));
  });

  it('gives a block migration a disk stall limit from disk_stall_timeout or the override, and a live one none', () => {
    const options = optionsFrom({ 'vmferry.disk_stall_timeout': 20 });
    const block = planOf(options, { disks: copy });
    assert.equal(block.diskStallTimeoutSeconds, 20);
    assert.match(
      reason(block, 'diskStallTimeout'),
      /^20 s without anything moving while the disks are mirrored fails the migration: guest writes to them wait at most that long on a cut link \(vmferry\.disk_stall_timeout = 20 /,
    );
    assert.equal(migrationSettings(block).diskStallSeconds, 20);
    const overridden = planOf(options, { disks: copy, overrides: { diskStallSeconds: 0 } });
    assert.equal(migrationSettings(overridden).diskStallSeconds, 0);
    assert.match(
      reason(overridden, 'diskStallTimeout'),
      /^no stall detection for the disk copies: .*\(override\)$/,
    );
    const live = planOf(options);
    assert.equal(reason(live, 'diskStallTimeout'), '');
    assert.equal(migrationSettings(live).diskStallSeconds, undefined);
    assert.equal(planOf(optionsFrom({}), { disks: copy }).diskStallTimeoutSeconds, 30, 'the default');
    assert.throws(
      () => planOf(options, { disks: copy, overrides: { diskStallSeconds: 1.5 } }),
      /diskStallSeconds must be a whole number >= 0, got 1.5/,
    );
  });

  it('copies the disks in clear text only when [vmferry] permit_cleartext allows it', () => {
    const refused = planError(() =>
      planOf(optionsFrom({}), { disks: copy, overrides: { transport: 'native', tls: false } }),
    );
    assert.equal(refused.code, 'VMF_ERR_PLAN');
    assert.match(refused.message, /clear text was requested/);
    assert.match(refused.hint ?? '', /permit_cleartext/);
    const clear = planOf(optionsFrom({ 'vmferry.permit_cleartext': true }), {
      disks: copy,
      overrides: { transport: 'native', tls: false },
    });
    assert.equal(clear.kind, 'block');
    assert.equal(clear.encryption, 'none');
    assert.equal(clear.tls, false);
    assert.equal(migrationSettings(clear).tls, false, 'the destination exports the disks without tls-creds');
  });
});

describe('the settings of a plan made with the VM disks', () => {
  it('carry the disk plans only for a block migration', () => {
    const base = {
      options: optionsFrom({}),
      kind: 'live' as const,
      memoryMiB: 1024,
      source: FULL_CAPABILITIES,
      destination: FULL_CAPABILITIES,
    };
    const shared = {
      disk: 0,
      storage: 'shared' as const,
      path: '/nfs/a.raw',
      format: 'raw' as const,
      virtualSize: 0,
    };
    const live = migrationSettings(
      planMigration({
        ...base,
        disks: {
          mode: undefined,
          modeReason: { message: 'live' },
          destinationHost: 'b',
          disks: [shared],
          destination: [],
        },
      }),
    );
    assert.equal(live.disks, undefined);
    assert.equal(
      checkMigrationSettings(JSON.parse(JSON.stringify(live))).disks,
      undefined,
      'the destination takes them',
    );
    const block = migrationSettings(
      planMigration({
        ...base,
        overrides: { keepSourceDisks: true },
        disks: {
          mode: 'all',
          modeReason: { message: '--block (override)' },
          destinationHost: 'b',
          disks: [{ ...shared, storage: 'local', path: 'a/d.raw', virtualSize: 1 << 30 }],
          destination: [{ disk: 0, exists: false, sameFile: false, why: 'no file there' }],
        },
      }),
    );
    assert.deepEqual(
      block.disks?.map((d) => [d.action, d.sync]),
      [['copy', 'full']],
    );
    assert.equal(block.keepSourceDisks, true);
    assert.deepEqual(checkMigrationSettings(JSON.parse(JSON.stringify(block))).disks, block.disks);
    assert.throws(
      () => checkMigrationSettings({ ...block, disks: [{ ...block.disks![0], sync: 'top' }] }),
      /settings\.disks must be a list of disk plans/,
    );
  });
});
