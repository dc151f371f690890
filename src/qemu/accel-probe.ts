import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostSetupError, describeError } from '../errors.js';
import { followFile } from './file-follower.js';
import { QemuVm } from './qemu-process.js';
import { runFiles, type Accelerator } from './vm-spec.js';

/** How a probe guest did under one accelerator: booting, then touching its memory for the first time. */
export interface GuestTiming {
  /** From starting QEMU to the guest's first line on serial, ms. */
  bootMs: number;
  /** How fast the guest filled memory it had never touched, MiB/s. */
  touchMiBps: number;
  /** Booting plus touching the probe's memory, ms. */
  totalMs: number;
  /** The fill did not finish in time: touchMiBps and totalMs come from its progress lines. */
  estimated: boolean;
}

export interface KvmEvidence {
  device: boolean;
  /** passed: a guest ran under KVM; failed: it did not; skipped: not tried (no device, or set by configuration). */
  probe: 'passed' | 'failed' | 'skipped';
  detail?: string;
  timing?: GuestTiming;
}

export interface AcceleratorProbe {
  accelerator: Accelerator;
  /** Why this accelerator was chosen, in words an operator can act on. */
  reason: string;
  kvm: KvmEvidence;
  /** The same guest under TCG, when KVM was timed against it. */
  tcg?: { timing: GuestTiming };
  /** The operator's `[vmferry] accel` / `--accel`, when not auto. */
  forced?: Accelerator;
}

export interface ProbeOptions {
  /** A guest that prints on serial as soon as it runs (the vmferry guest). */
  guestKernel: string;
  /** `kvm` or `tcg` set by the operator: no probe guest is run. */
  accel?: Accelerator | 'auto';
  kvmDevice?: string;
  /** How long the guest may take to print its first line under KVM. */
  timeoutMs?: number;
  qemuBinary?: string;
}

/** The probe guest's workload: this much memory filled from scratch. */
export const PROBE_TOUCH_MIB = 2;
/** KVM is kept unless the probe guest needs more than this many times as long as under TCG. */
export const KVM_SLOWER_FACTOR = 2;
/**
 * After its first line, how long the guest may take to fill its memory and print a
 * heartbeat. The heartbeat proves interrupts work: the guest waits for timer ticks
 * (hlt) between verifications, and some KVMs run a guest's first instructions yet
 * fail at its first interrupt return (kvm-pvm: "emulation failure" on iret).
 */
const HEARTBEAT_WINDOW_MS = 6000;

/**
 * Picks the accelerator from what the probe saw. Pure. KVM is chosen when a guest
 * ran under it and was not much slower than under TCG: under nested virtualization
 * every first touch of guest memory can cost a trap to the outer hypervisor, and a
 * guest that crawls is worse than an emulated one.
 */
export function chooseAccelerator(e: { kvm: KvmEvidence; tcg?: GuestTiming; kvmDevice?: string }): {
  accelerator: Accelerator;
  reason: string;
} {
  const device = e.kvmDevice ?? '/dev/kvm';
  if (!e.kvm.device) {
    return { accelerator: 'tcg', reason: `${device} does not exist: using TCG (software emulation)` };
  }
  if (e.kvm.probe !== 'passed' || e.kvm.timing === undefined) {
    return { accelerator: 'tcg', reason: `${e.kvm.detail ?? 'KVM was not probed'}: using TCG` };
  }
  const kvm = e.kvm.timing;
  if (e.tcg === undefined) {
    return { accelerator: 'kvm', reason: `a probe guest ran under KVM (${describeTiming(kvm)})` };
  }
  const figures = `under KVM ${describeTiming(kvm)}, under TCG ${describeTiming(e.tcg)}`;
  if (kvm.totalMs > KVM_SLOWER_FACTOR * e.tcg.totalMs) {
    return {
      accelerator: 'tcg',
      reason: `KVM works but is slower than TCG here (nested virtualization?): ${figures}: using TCG`,
    };
  }
  return { accelerator: 'kvm', reason: `a probe guest ran under KVM: ${figures}` };
}

/** "booted in 3.40 s, touched 8 MiB at 0.6 MiB/s (16.9 s in all, estimated)". */
export function describeTiming(t: GuestTiming): string {
  const rate = t.touchMiBps >= 10 ? t.touchMiBps.toFixed(0) : t.touchMiBps.toFixed(2);
  return `booted in ${seconds(t.bootMs)}, touched ${PROBE_TOUCH_MIB} MiB at ${rate} MiB/s (${seconds(t.totalMs)} in all${t.estimated ? ', estimated' : ''})`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 1000 ? 3 : 2)} s`;
}

/**
 * Collects the probe guest's serial lines with the time each arrived (ms since
 * QEMU started) and turns them into a {@link GuestTiming}. Pure: the caller feeds it.
 */
export class TimingObserver {
  private firstLineAt: number | undefined;
  private fillStartedAt: number | undefined;
  private pages: number | undefined;
  private progress: { pages: number; at: number } | undefined;
  private readyAt: number | undefined;
  private heartbeatAt: number | undefined;
  private partial = '';

  /** Feeds text as it arrived at `at` ms. */
  feed(text: string, at: number): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.line(line, at);
  }

  get printed(): boolean {
    return this.firstLineAt !== undefined;
  }

  get hasProgress(): boolean {
    return this.progress !== undefined;
  }

  get ready(): boolean {
    return this.readyAt !== undefined;
  }

  /** A heartbeat came after the fill: the guest took timer interrupts. */
  get heartbeat(): boolean {
    return this.heartbeatAt !== undefined;
  }

  private line(line: string, at: number): void {
    if (!/vmferry-(guest|hb)\b/.test(line)) return;
    this.firstLineAt ??= at;
    const filling = /vmferry-guest filling mem=\d+ pages=(\d+)/.exec(line);
    if (filling !== null) {
      this.fillStartedAt = at;
      this.pages = Number(filling[1]);
      return;
    }
    const progress = /vmferry-guest filling progress=(\d+)\//.exec(line);
    if (progress !== null) {
      this.progress = { pages: Number(progress[1]), at };
      return;
    }
    if (/vmferry-guest ready\b/.test(line)) this.readyAt ??= at;
    else if (/^vmferry-hb\b/.test(line)) this.heartbeatAt ??= at;
  }

  /** The timing so far, at `now` ms; undefined when the guest never printed. */
  timing(now: number): GuestTiming | undefined {
    if (this.firstLineAt === undefined) return undefined;
    const bootMs = this.firstLineAt;
    const start = this.fillStartedAt ?? this.firstLineAt;
    const totalPages = this.pages ?? (PROBE_TOUCH_MIB * 1024 * 1024) / 4096;
    const mib = (pages: number): number => (pages * 4096) / (1024 * 1024);
    if (this.readyAt !== undefined) {
      const fillMs = Math.max(1, this.readyAt - start);
      return {
        bootMs,
        touchMiBps: mib(totalPages) / (fillMs / 1000),
        totalMs: this.readyAt,
        estimated: false,
      };
    }
    // Not done: the rate from the last progress line, or an upper bound (the guest
    // reports every 64 pages at most once a second, so none means under 64 pages).
    const done = this.progress ?? { pages: 64, at: now };
    const rateMiBps = mib(done.pages) / (Math.max(1, done.at - start) / 1000);
    return {
      bootMs,
      touchMiBps: rateMiBps,
      totalMs: start + (mib(totalPages) / rateMiBps) * 1000,
      estimated: true,
    };
  }
}

function roundTiming(t: GuestTiming | undefined): GuestTiming | undefined {
  if (t === undefined) return undefined;
  return {
    bootMs: Math.round(t.bootMs),
    touchMiBps: Math.round(t.touchMiBps * 100) / 100,
    totalMs: Math.round(t.totalMs),
    estimated: t.estimated,
  };
}

/** What one probe run saw. */
interface ProbeRun {
  timing: GuestTiming | undefined;
  heartbeat: boolean;
  exited: boolean;
  /** QEMU's run state at the end (`internal-error` when KVM gave up on the guest). */
  status: string | undefined;
}

/**
 * Boots the probe guest under `accel`, times it, and waits for its first heartbeat.
 * Throws what QEMU said when it does not start.
 */
async function runProbeGuest(
  accel: Accelerator,
  options: { guestKernel: string; qemuBinary?: string; firstLineMs: number },
): Promise<ProbeRun> {
  const runDir = mkdtempSync(join(tmpdir(), `vmf-${accel}-probe-`));
  const observer = new TimingObserver();
  const started = performance.now();
  const elapsed = (): number => performance.now() - started;
  const follower = followFile(runFiles(runDir).serialLog, (text) => observer.feed(text, elapsed()), {
    intervalMs: 10,
  });
  let vm: QemuVm | undefined;
  try {
    vm = await QemuVm.launch(
      {
        name: `${accel}-probe`,
        memoryMiB: PROBE_TOUCH_MIB + 32,
        vcpus: 1,
        machine: 'pc',
        cpu: 'qemu64',
        // Paced verification: the guest halts between pages and wakes on timer interrupts.
        boot: { kernel: options.guestKernel, append: `mem=${PROBE_TOUCH_MIB} dirty=0 verify=16` },
        disks: [],
        nics: [],
      },
      { accel, runDir, qemuBinary: options.qemuBinary },
    );
    while (!observer.printed && vm.alive && elapsed() < options.firstLineMs) await sleep(10);
    const deadline = elapsed() + HEARTBEAT_WINDOW_MS;
    const runState = async (): Promise<string | undefined> =>
      vm?.alive === true
        ? vm.qmp.execute<{ status: string }>('query-status').then(
            (r) => r.status,
            () => undefined,
          )
        : undefined;
    let status = await runState();
    let checkedAt = elapsed();
    while (observer.printed && !observer.heartbeat && vm.alive && elapsed() < deadline) {
      // KVM stops a guest it cannot run (internal-error) and QEMU stays up: no use waiting.
      if (status !== undefined && status !== 'running') break;
      await sleep(10);
      if (elapsed() - checkedAt >= 200) {
        status = await runState();
        checkedAt = elapsed();
      }
    }
    status = await runState();
    return {
      timing: roundTiming(observer.timing(elapsed())),
      heartbeat: observer.heartbeat,
      exited: !vm.alive,
      status,
    };
  } finally {
    follower.stop();
    if (vm !== undefined) await vm.stop(2000);
    rmSync(runDir, { recursive: true, force: true });
  }
}

/** What a KVM probe run says about KVM on this host. */
export function kvmEvidence(run: ProbeRun, firstLineMs: number): KvmEvidence {
  const timing = run.timing !== undefined ? { timing: run.timing } : {};
  if (run.timing !== undefined && run.heartbeat) return { device: true, probe: 'passed', ...timing };
  let detail: string;
  if (run.timing === undefined) {
    detail = run.exited
      ? 'QEMU exited while running the probe guest under KVM'
      : `the probe guest started under KVM but printed nothing on serial within ${firstLineMs} ms`;
  } else if (run.status === 'internal-error') {
    detail =
      'the probe guest booted under KVM, then KVM stopped it with an internal error (QEMU status internal-error) before its first heartbeat: this KVM cannot run ordinary guests';
  } else if (run.exited) {
    detail = 'QEMU exited after the probe guest booted under KVM, before its first heartbeat';
  } else {
    detail = `the probe guest booted under KVM but printed no heartbeat within ${HEARTBEAT_WINDOW_MS / 1000} s (${describeTiming(run.timing)})`;
  }
  return { device: true, probe: 'failed', detail, ...timing };
}

/**
 * Chooses the accelerator. KVM only when a guest really runs under it (on some
 * hosts /dev/kvm exists and QEMU starts, yet the guest never executes, or -cpu
 * host aborts) and is not much slower than the same guest under TCG (nested
 * virtualization): the probe boots the guest under both and times it. `accel`
 * set to kvm or tcg skips the probe.
 */
export async function probeAccelerator(options: ProbeOptions): Promise<AcceleratorProbe> {
  const device = options.kvmDevice ?? '/dev/kvm';
  const hasDevice = existsSync(device);
  if (options.accel === 'tcg') {
    return {
      accelerator: 'tcg',
      reason: 'set by configuration (accel = tcg): KVM not probed',
      kvm: { device: hasDevice, probe: 'skipped', detail: 'accel = tcg' },
      forced: 'tcg',
    };
  }
  if (options.accel === 'kvm') {
    if (!hasDevice) {
      throw new HostSetupError(`accel = kvm, but ${device} does not exist`, {
        hint: 'load the kvm module (and kvm_intel or kvm_amd), or set [vmferry] accel = auto',
      });
    }
    return {
      accelerator: 'kvm',
      reason: 'set by configuration (accel = kvm): not probed',
      kvm: { device: true, probe: 'skipped', detail: 'accel = kvm' },
      forced: 'kvm',
    };
  }
  if (!hasDevice) {
    return {
      ...chooseAccelerator({ kvm: { device: false, probe: 'skipped' }, kvmDevice: device }),
      kvm: { device: false, probe: 'skipped' },
    };
  }
  if (!existsSync(options.guestKernel)) {
    throw new HostSetupError(
      `the probe guest ${options.guestKernel} is missing: cannot tell whether KVM works`,
      {
        hint: 'run npm run setup (it builds the guest with make -C guest)',
      },
    );
  }
  const firstLineMs = options.timeoutMs ?? 8000;
  const common = { guestKernel: options.guestKernel, qemuBinary: options.qemuBinary, firstLineMs };
  // TCG first and alone: both runs on the same idle CPUs, so the figures compare.
  const tcg = await runProbeGuest('tcg', common).then(
    (r) => (r.heartbeat ? r.timing : undefined),
    () => undefined,
  );
  let kvm: KvmEvidence;
  try {
    kvm = kvmEvidence(await runProbeGuest('kvm', common), firstLineMs);
  } catch (err) {
    kvm = {
      device: true,
      probe: 'failed',
      detail: `KVM could not start the probe guest (${describeError(err)})`,
    };
  }
  const choice = chooseAccelerator({ kvm, ...(tcg !== undefined ? { tcg } : {}), kvmDevice: device });
  return { ...choice, kvm, ...(tcg !== undefined ? { tcg: { timing: tcg } } : {}) };
}
