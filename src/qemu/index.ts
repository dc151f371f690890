export {
  QmpClient,
  type QmpEvent,
  type QmpEventHandler,
  type QmpGreeting,
  type QmpConnectOptions,
} from './qmp-client.js';
export { QemuVm, qemuLogTail, isQemuOf, DEFAULT_QEMU_BINARY, type QemuExit } from './qemu-process.js';
export {
  buildQemuArgv,
  memoryOnlyArgv,
  validateVmSpec,
  runFiles,
  RAM_BACKEND_ID,
  type VmSpec,
  type DiskSpec,
  type MemoryBackendSpec,
  type LaunchOptions,
  type Accelerator,
} from './vm-spec.js';
export {
  probeAccelerator,
  chooseAccelerator,
  describeTiming,
  KVM_SLOWER_FACTOR,
  PROBE_TOUCH_MIB,
  type AcceleratorProbe,
  type GuestTiming,
  type KvmEvidence,
  type ProbeOptions,
} from './accel-probe.js';
export { probeQemuFeatures, type QemuFeatures } from './qemu-features.js';
export { followFile, type FileFollower } from './file-follower.js';
export { probeHost, type HostInfo } from './host-info.js';
