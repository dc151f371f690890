export {
  ACTION_HEADER,
  DashboardServer,
  readAgent,
  type DashboardAgent,
  type DashboardOptions,
} from './dashboard-server.js';
export { parseDashboardListen, type ListenAddress } from './listen-address.js';
export {
  dashboardSnapshot,
  type ActiveMigration,
  type AgentReading,
  type DashboardHost,
  type DashboardSnapshot,
  type DashboardVm,
  type FinishedMigration,
} from './snapshot.js';
