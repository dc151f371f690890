export * from './types.js';
export * from './convergence.js';
export {
  SourceMigration,
  type DestinationPeer,
  type MigrationRecorder,
  type SourceMigrationDeps,
} from './source-migration.js';
export { forecastPrecopy, ratesFromSamples, type Forecast, type ForecastInput } from './forecast.js';
export { restoreSourceGuest, type SourceRestore } from './source-recovery.js';
export { settleHandOver, settleRetryDelayMs, type HandOverOutcome } from './handover.js';
export { resumePostcopy } from './postcopy.js';
export { closeTransport, type TransportFactory, type TransportSession } from './transport-session.js';
