import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  KVM_SLOWER_FACTOR,
  TimingObserver,
  chooseAccelerator,
  kvmEvidence,
  probeAccelerator,
  type GuestTiming,
} from './accel-probe.js';

const fast: GuestTiming = { bootMs: 100, touchMiBps: 300, totalMs: 130, estimated: false };

describe('chooseAccelerator', () => {
  it('uses TCG when the KVM device is missing, and names it', () => {
    const c = chooseAccelerator({ kvm: { device: false, probe: 'skipped' }, kvmDevice: '/dev/kvm-x' });
    assert.deepEqual(c, {
      accelerator: 'tcg',
      reason: '/dev/kvm-x does not exist: using TCG (software emulation)',
    });
  });

  it('uses TCG when the probe guest never ran under KVM, with the probe detail', () => {
    const c = chooseAccelerator({
      kvm: { device: true, probe: 'failed', detail: 'the probe guest printed nothing' },
      tcg: fast,
    });
    assert.equal(c.accelerator, 'tcg');
    assert.equal(c.reason, 'the probe guest printed nothing: using TCG');
  });

  it('keeps KVM when it is faster than TCG and gives both figures', () => {
    const kvm: GuestTiming = { bootMs: 60, touchMiBps: 2000, totalMs: 64, estimated: false };
    const c = chooseAccelerator({ kvm: { device: true, probe: 'passed', timing: kvm }, tcg: fast });
    assert.equal(c.accelerator, 'kvm');
    assert.equal(
      c.reason,
      'a probe guest ran under KVM: under KVM booted in 0.060 s, touched 2 MiB at 2000 MiB/s (0.064 s in all), ' +
        'under TCG booted in 0.100 s, touched 2 MiB at 300 MiB/s (0.130 s in all)',
    );
  });

  it(`keeps KVM when it is slower, but by no more than ${KVM_SLOWER_FACTOR}x (timing noise)`, () => {
    const kvm: GuestTiming = { ...fast, totalMs: fast.totalMs * KVM_SLOWER_FACTOR };
    assert.equal(
      chooseAccelerator({ kvm: { device: true, probe: 'passed', timing: kvm }, tcg: fast }).accelerator,
      'kvm',
    );
  });

  it('prefers TCG when KVM crawls (nested virtualization), citing both figures', () => {
    const kvm: GuestTiming = { bootMs: 3350, touchMiBps: 0.64, totalMs: 15850, estimated: true };
    const c = chooseAccelerator({ kvm: { device: true, probe: 'passed', timing: kvm }, tcg: fast });
    assert.equal(c.accelerator, 'tcg');
    assert.match(c.reason, /^KVM works but is slower than TCG here/);
    assert.match(
      c.reason,
      /under KVM booted in 3\.35 s, touched 2 MiB at 0\.64 MiB\/s \(15\.85 s in all, estimated\)/,
    );
    assert.match(
      c.reason,
      /under TCG booted in 0\.100 s, touched 2 MiB at 300 MiB\/s \(0\.130 s in all\): using TCG$/,
    );
  });

  it('keeps KVM when TCG could not be timed', () => {
    const kvm: GuestTiming = { bootMs: 3350, touchMiBps: 0.64, totalMs: 15850, estimated: true };
    assert.equal(
      chooseAccelerator({ kvm: { device: true, probe: 'passed', timing: kvm } }).accelerator,
      'kvm',
    );
  });
});

describe('kvmEvidence', () => {
  const booted: GuestTiming = { bootMs: 3350, touchMiBps: 0.64, totalMs: 6500, estimated: false };

  it('passes KVM only when the guest also printed a heartbeat (it took timer interrupts)', () => {
    assert.deepEqual(
      kvmEvidence({ timing: booted, heartbeat: true, exited: false, status: 'running' }, 8000),
      {
        device: true,
        probe: 'passed',
        timing: booted,
      },
    );
  });

  it('fails KVM that booted the guest and then stopped it with an internal error, keeping the figures', () => {
    const e = kvmEvidence(
      { timing: booted, heartbeat: false, exited: false, status: 'internal-error' },
      8000,
    );
    assert.equal(e.probe, 'failed');
    assert.equal(e.timing, booted);
    assert.match(e.detail ?? '', /KVM stopped it with an internal error \(QEMU status internal-error\)/);
    assert.equal(chooseAccelerator({ kvm: e, tcg: fast }).accelerator, 'tcg');
  });

  it('fails KVM whose guest never printed, saying how long it waited', () => {
    const e = kvmEvidence({ timing: undefined, heartbeat: false, exited: false, status: 'running' }, 8000);
    assert.deepEqual(e, {
      device: true,
      probe: 'failed',
      detail: 'the probe guest started under KVM but printed nothing on serial within 8000 ms',
    });
  });

  it('fails KVM whose guest is still filling when the window closes, with the estimate', () => {
    const slow: GuestTiming = { ...booted, totalMs: 20_000, estimated: true };
    const e = kvmEvidence({ timing: slow, heartbeat: false, exited: false, status: 'running' }, 8000);
    assert.equal(e.probe, 'failed');
    assert.match(e.detail ?? '', /printed no heartbeat within 6 s \(booted in 3\.35 s, .*estimated\)/);
  });
});

describe('TimingObserver', () => {
  it('times boot and fill from lines as they arrive, across chunk boundaries', () => {
    const o = new TimingObserver();
    o.feed('vmferry-guest boot cmdline="x mem=8"\nvmferry-guest filling mem=8 pa', 100);
    o.feed('ges=2048 base=0x1000000\n', 110);
    assert.equal(o.printed, true);
    assert.equal(o.ready, false);
    o.feed('vmferry-guest ready mem=8 dirty=0 base=0x1000000 pages=2048\n', 140);
    assert.equal(o.heartbeat, false);
    o.feed('vmferry-hb seq=1 written=0 verified=4096 status=OK\n', 1150);
    assert.equal(o.heartbeat, true);
    assert.deepEqual(o.timing(150), { bootMs: 100, touchMiBps: 8 / 0.03, totalMs: 140, estimated: false });
  });

  it('estimates from the last progress line when the fill has not finished', () => {
    const o = new TimingObserver();
    o.feed('vmferry-guest boot cmdline=""\n', 3000);
    o.feed('vmferry-guest filling mem=8 pages=2048 base=0x1000000\n', 3000);
    o.feed('vmferry-guest filling progress=256/2048\n', 5000);
    const t = o.timing(6000);
    // 256 pages = 1 MiB in 2 s: 0.5 MiB/s, so 8 MiB take 16 s after the fill began.
    assert.deepEqual(t, { bootMs: 3000, touchMiBps: 0.5, totalMs: 19_000, estimated: true });
    assert.equal(o.hasProgress, true);
  });

  it('bounds the rate when not even the first progress line came', () => {
    const o = new TimingObserver();
    o.feed('vmferry-guest filling mem=8 pages=2048 base=0x1000000\n', 1000);
    const t = o.timing(5000);
    // Fewer than 64 pages (0.25 MiB) in 4 s.
    assert.equal(t?.touchMiBps, 0.0625);
    assert.equal(t?.estimated, true);
  });

  it('ignores lines that are not the guest and reports nothing before the guest printed', () => {
    const o = new TimingObserver();
    o.feed('SeaBIOS (version 1.16)\nBooting from ROM..\n', 50);
    assert.equal(o.printed, false);
    assert.equal(o.timing(100), undefined);
  });
});

describe('probeAccelerator with the accelerator set by configuration', () => {
  it('accel = tcg answers TCG without running a probe guest', async () => {
    const p = await probeAccelerator({ guestKernel: '/nonexistent/guest.elf', accel: 'tcg' });
    assert.equal(p.accelerator, 'tcg');
    assert.equal(p.forced, 'tcg');
    assert.equal(p.kvm.probe, 'skipped');
    assert.equal(p.reason, 'set by configuration (accel = tcg): KVM not probed');
  });

  it('accel = kvm without the device is refused, naming the device', async () => {
    await assert.rejects(
      probeAccelerator({
        guestKernel: '/nonexistent/guest.elf',
        accel: 'kvm',
        kvmDevice: '/dev/no-kvm-here',
      }),
      (err: Error & { code?: string }) =>
        err.code === 'VMF_ERR_HOST_SETUP' &&
        err.message === 'accel = kvm, but /dev/no-kvm-here does not exist',
    );
  });
});
