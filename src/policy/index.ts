// Public face of src/policy: pure decisions about how a migration runs.
export { FULL_CAPABILITIES, type HostCapabilities } from './host-capabilities.js';
export {
  completionTimeoutReached,
  completionTimeoutSeconds,
  downtimeStepAt,
  downtimeSteps,
  migrationDataGiB,
  type DowntimeStep,
} from './downtime-steps.js';
export {
  UNLIMITED_BANDWIDTH_BYTES,
  planMigration,
  type MigrationKind,
  type MigrationPlan,
  type PlanInput,
  type PlanOverrides,
} from './migration-plan.js';
export type {
  Decided,
  Encryption,
  MigrationOverrides,
  MigrationSettings,
  PlanDecision,
  PlanReason,
  TimeoutAction,
  Transport,
  TunnelMode,
} from './types.js';
