import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostSetupError, describeError } from '../errors.js';
import { followFile } from './file-follower.js';
import { QemuVm } from './qemu-process.js';
import { runFiles, type Accelerator } from './vm-spec.js';

export interface AcceleratorProbe {
  accelerator: Accelerator;
  /** Why this accelerator was chosen, in words an operator can act on. */
  reason: string;
  kvm: { device: boolean; probe: 'passed' | 'failed' | 'skipped'; detail?: string };
}

export interface ProbeOptions {
  /** A guest that prints on serial as soon as it runs (the vmferry guest). */
  guestKernel: string;
  kvmDevice?: string;
  timeoutMs?: number;
  qemuBinary?: string;
}

/** What the guest prints once it runs: its ready line or a heartbeat. */
const GUEST_ALIVE = /vmferry-(guest|hb)\b/;

/**
 * Chooses KVM only when a guest really runs under it: on some hosts /dev/kvm
 * exists and QEMU starts, yet the guest never executes (or -cpu host aborts).
 * The probe boots the guest under KVM and waits for it to print on serial;
 * anything else means TCG.
 */
export async function probeAccelerator(options: ProbeOptions): Promise<AcceleratorProbe> {
  const device = options.kvmDevice ?? '/dev/kvm';
  if (!existsSync(device)) {
    return {
      accelerator: 'tcg',
      reason: `${device} does not exist: using TCG (software emulation)`,
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
  const timeoutMs = options.timeoutMs ?? 8000;
  const runDir = mkdtempSync(join(tmpdir(), 'vmf-kvm-probe-'));
  let vm: QemuVm | undefined;
  let printed = false;
  const follower = followFile(
    runFiles(runDir).serialLog,
    (text) => {
      if (GUEST_ALIVE.test(text)) printed = true;
    },
    { intervalMs: 100 },
  );
  try {
    vm = await QemuVm.launch(
      { name: 'kvm-probe', memoryMiB: 64, vcpus: 1, kernel: options.guestKernel, append: 'mem=1 dirty=0' },
      { accel: 'kvm', runDir, qemuBinary: options.qemuBinary },
    );
    const deadline = Date.now() + timeoutMs;
    while (!printed && vm.alive && Date.now() < deadline) await sleep(100);
    if (printed) {
      return {
        accelerator: 'kvm',
        reason: 'a probe guest ran and printed on serial under KVM',
        kvm: { device: true, probe: 'passed' },
      };
    }
    const detail = vm.alive
      ? `the probe guest started under KVM but printed nothing on serial within ${timeoutMs} ms`
      : 'QEMU exited while running the probe guest under KVM';
    return {
      accelerator: 'tcg',
      reason: `${detail}: using TCG`,
      kvm: { device: true, probe: 'failed', detail },
    };
  } catch (err) {
    const detail = describeError(err);
    return {
      accelerator: 'tcg',
      reason: `KVM could not start the probe guest (${detail}): using TCG`,
      kvm: { device: true, probe: 'failed', detail },
    };
  } finally {
    follower.stop();
    if (vm !== undefined) await vm.stop(2000);
    rmSync(runDir, { recursive: true, force: true });
  }
}
