// Public face of src/calibration: measuring each secure transport to a peer, and the figures the plan compares.
export {
  CALIBRATION_OVERRIDES,
  CALIBRATION_VM_PREFIX,
  calibrate,
  type CalibrationDeps,
  type CalibrationResult,
  type CalibrationRun,
  type TrialReport,
} from './calibration.js';
export {
  RECENT_MIGRATIONS,
  figuresFromCalibration,
  figuresFromMigrations,
  transportFiguresFor,
  type PastMigration,
} from './figures.js';
