// Public face of src/migration: both ends of a migration and the pure decisions they ask.
export * from './types.js';
export * from './convergence.js';
export { systemClock, type Clock } from './clock.js';
export {
  SourceMigration,
  type DestinationPeer,
  type MigrationRecorder,
  type SourceMigrationDeps,
} from './source-migration.js';
export {
  DestinationMigration,
  interruptedDestinationAction,
  orphanVerdict,
  type DestinationMigrationDeps,
  type IncomingEndpoints,
  type TunnelAcceptance,
} from './destination-migration.js';
export { initialMonitorState, nextAction, type MonitorAction, type MonitorState } from './next-action.js';
export { finishPostcopy, type PostcopyRun } from './postcopy.js';
export { configureMigration, type QemuSetup, type StreamSettings } from './qemu-setup.js';
export { forecastPrecopy, type Forecast, type ForecastInput } from './forecast.js';
export { interruptedSourceAction, restoreSourceGuest, type SourceRestore } from './source-recovery.js';
export { POSTCOPY_STATUSES, wentThroughPostcopy, type QueryMigrate } from './query-migrate.js';
export { settleHandOver, settleRetryDelayMs, type HandOverOutcome } from './handover.js';
export { DiskCopy, type DiskCopyPlan, type DiskTransport } from './disk-copy.js';
export { closeTransport, type TransportFactory, type TransportSession } from './transport-session.js';
