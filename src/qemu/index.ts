export {
  QmpClient,
  type QmpEvent,
  type QmpEventHandler,
  type QmpGreeting,
  type QmpConnectOptions,
} from './qmp-client.js';
export { QemuVm, qemuLogTail, isQemuOf, DEFAULT_QEMU_BINARY, type QemuExit } from './qemu-process.js';
export {
  parseVmSpec,
  validateVmSpec,
  storedVmSpec,
  isKernelBoot,
  normaliseMac,
  runFiles,
  ramSizeKiB,
  MAX_DISKS,
  MAX_NICS,
  QEMU_SANDBOX,
  type VmSpec,
  type VmSpecDraft,
  type BootSpec,
  type KernelBoot,
  type FirmwareBoot,
  type DiskSpec,
  type NicSpec,
  type MemoryBackendSpec,
  type LaunchOptions,
  type Accelerator,
} from './vm-spec.js';
export { buildQemuArgv, memoryOnlyArgv, deviceIds, RAM_BACKEND_ID } from './qemu-argv.js';
export { completeVmSpec, generateMac, type SpecDefaults } from './complete-vm-spec.js';
export {
  defaultMachineType,
  machineFamily,
  machineTypesFromQmp,
  resolveMachineType,
  type MachineType,
} from './machine-types.js';
export {
  cpuModelsFromQmp,
  defaultCpuModel,
  hostCpuFromCpuinfo,
  hostCpuMismatch,
  resolveCpuModel,
  type CpuModel,
  type HostCpu,
} from './cpu-models.js';
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
export { probeQemuFeatures, probeKvmCpuModels, type QemuFeatures } from './qemu-features.js';
export { diskIdentity, type DiskIdentity } from './disk-identity.js';
export { checkLocalDiskPath, diskImagePath, type DiskStorage } from './disk-paths.js';
export { followFile, type FileFollower } from './file-follower.js';
export { probeHost, type HostInfo } from './host-info.js';
export {
  FULL_CAPABILITIES,
  type HostCapabilities,
  type TunnelRelay,
  type TunnelRelayKind,
} from './host-capabilities.js';
