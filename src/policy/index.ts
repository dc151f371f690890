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
  type Encryption,
  type MigrationKind,
  type MigrationPlan,
  type PlanDecision,
  type PlanInput,
  type PlanOverrides,
  type PlanReason,
  type Transport,
} from './migration-plan.js';
