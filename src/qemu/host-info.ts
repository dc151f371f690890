import { readFileSync } from 'node:fs';
import { describeError } from '../errors.js';
import { guestKernelPath } from '../guest/index.js';
import { probeAccelerator, type AcceleratorProbe } from './accel-probe.js';
import { hostCpuFromCpuinfo, type CpuModel, type HostCpu } from './cpu-models.js';
import type { Accelerator } from './vm-spec.js';
import type { HostCapabilities } from './host-capabilities.js';
import { probeKvmCpuModels, probeQemuFeatures, type QemuFeatures } from './qemu-features.js';
import { DEFAULT_QEMU_BINARY } from './qemu-process.js';

/** Everything `vmferry host info` and an agent report about a host. */
export interface HostInfo extends QemuFeatures, Omit<HostCapabilities, 'qemuVersion'> {
  qemuBinary: string;
  accelerator: AcceleratorProbe['accelerator'];
  acceleratorReason: string;
  kvm: AcceleratorProbe['kvm'];
  /** The probe guest under TCG, when KVM was timed against it. */
  tcg?: AcceleratorProbe['tcg'];
  /** The physical CPU: VMs with cpu "host" move only between hosts where it is the same. */
  hostCpu: HostCpu | undefined;
  /** Under KVM: each CPU model and the features this host lacks for it. */
  kvmCpuModels?: CpuModel[];
}

export async function probeHost(
  options: {
    qemuBinary?: string;
    tlsCredsDir?: string;
    guestKernel?: string;
    kvmDevice?: string;
    /** kvm or tcg: the operator's choice, not probed. */
    accel?: Accelerator | 'auto';
  } = {},
): Promise<HostInfo> {
  const qemuBinary = options.qemuBinary ?? DEFAULT_QEMU_BINARY;
  const guestKernel = options.guestKernel ?? guestKernelPath();
  const caps = await probeQemuFeatures({ qemuBinary, tlsCredsDir: options.tlsCredsDir });
  const accel = await probeAccelerator({
    guestKernel,
    qemuBinary,
    kvmDevice: options.kvmDevice,
    accel: options.accel,
  });
  const has = (name: string): boolean => caps.migrationCapabilities.includes(name);
  let kvmCpuModels: CpuModel[] | undefined;
  if (accel.accelerator === 'kvm') {
    kvmCpuModels = await probeKvmCpuModels({ qemuBinary }).catch(() => undefined);
  }
  return {
    qemuBinary,
    ...caps,
    accelerator: accel.accelerator,
    acceleratorReason: accel.reason,
    kvm: accel.kvm,
    ...(accel.tcg !== undefined ? { tcg: accel.tcg } : {}),
    hostCpu: readHostCpu(),
    ...(kvmCpuModels !== undefined ? { kvmCpuModels } : {}),
    nativeTls: caps.tls.supported && caps.tls.credentials?.usable === true,
    multifd: has('multifd'),
    postcopy: has('postcopy-ram'),
    autoConverge: has('auto-converge'),
  };
}

function readHostCpu(): HostCpu | undefined {
  try {
    return hostCpuFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch (err) {
    process.emitWarning(`cannot read /proc/cpuinfo: ${describeError(err)}`);
    return undefined;
  }
}
