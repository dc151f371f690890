// Public face of src/policy: pure decisions about how a migration runs.
export {
  completionTimeoutReached,
  completionTimeoutSeconds,
  downtimeStepAt,
  downtimeSteps,
  migrationDataGiB,
  type DowntimeStep,
} from './downtime-steps.js';
export { UNLIMITED_BANDWIDTH_BYTES } from './decide-limits.js';
export { migrationSettings, planMigration, type MigrationPlan } from './migration-plan.js';
export { CHANNEL_RANGE, checkChannels, type MigrationKind, type PlanInput } from './plan-input.js';
export { RELAY_WORKER_RANGE, decideRelayWorkers } from './relay-workers.js';
export { decideTunnelRelay, describeRelays, type TunnelRelaySetting } from './decide-relay.js';
export { checkMigrationSettings } from './check-settings.js';
export {
  BENCHMARKED_DEFAULTS,
  benchmarkedDefault,
  chooseFigures,
  type FigurePair,
  type SecureTransport,
  type TransportFigure,
  type TransportFigures,
} from './transport-figures.js';
export { decideDisks, type DiskDecisionInput } from './decide-disks.js';
export type {
  BlockMode,
  Decided,
  DestinationDiskView,
  DiskPlan,
  ImageFingerprint,
  SourceDisk,
  Encryption,
  MigrationOverrides,
  MigrationSettings,
  PlanDecision,
  PlanReason,
  TimeoutAction,
  Transport,
  TunnelMode,
} from './types.js';
export {
  checkAccelerators,
  checkBridges,
  checkCpuModel,
  checkHostCpu,
  checkIncomingStream,
  checkMachine,
  checkMaintenance,
  checkMemory,
  checkQemuVersion,
  checkSharedDisks,
  preflightChecks,
  preflightError,
  type DiskIdentity,
  type DiskLookup,
  type HostCapacity,
  type IncomingStreamPolicy,
  type PreflightDestination,
  type PreflightHost,
  type PreflightRequest,
  type PreflightResult,
} from './preflight.js';
