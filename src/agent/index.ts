export { Agent, type AgentOptions } from './agent.js';
export {
  API,
  AgentApi,
  pathOf,
  type DryRun,
  type HostSummary,
  type MigrationRequest,
  type MigrationView,
  type StartedMigration,
} from './api-client.js';
export { ROUTE_ROLES, OTHER_ROUTES, accessMatrix, mayCall, type RouteName } from './route-access.js';
export { vmFileDirsFrom, type VmFileDirs } from './vm-confinement.js';
export { lookUpQemuUser, type QemuUser } from './qemu-user.js';
export { HostFacts, type PreflightAnswer } from './preflight.js';
export { parsePeers, peerStatuses, type PeerStatus } from './peers.js';
export { Drains, type DrainPlan, type DrainRequest } from './drains.js';
export { AgentClient, parseAgentEndpoint, type AgentEndpoint } from './agent-client.js';
export { ApiServer, Reply, type ApiRequest, type ApiHandler, type Peer } from './api-server.js';
export {
  openJournal,
  type Journal,
  type MigrationEvent,
  type MigrationRecord,
  type VmRecord,
} from './journal.js';
export type { VmView, VmState } from './vm-registry.js';
export type { ConsoleChunk, ConsoleTail } from './console-log.js';
