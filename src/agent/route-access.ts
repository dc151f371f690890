import { AuthError } from '../errors.js';
import { noRoleError, ROLES, type Role } from '../pki/index.js';
import { API } from './api-client.js';

/** Served beside the API table: the tunnel (an HTTP Upgrade on the agent's port, relayed by the front door). */
export const OTHER_ROUTES = {
  tunnel: 'GET /v1/tunnel/:id',
} as const;

export type RouteName = keyof typeof API | keyof typeof OTHER_ROUTES;

/**
 * Who may call what: the one table. Each row is an endpoint of the API table
 * (api-client.ts, served by routes.ts) or of {@link OTHER_ROUTES}, and the roles
 * whose certificates may call it. Hosts reach only what another agent needs
 * (its host summary, the destination's half of a migration, the source's word on
 * a migration it sent, a migrated VM's console, tunnels); operators drive VMs and migrations; viewers and
 * metrics scrapers only read. docs/security.md prints this table (a test keeps them equal).
 */
export const ROUTE_ROLES = {
  host: ['host', 'operator', 'viewer'],
  // Trial migrations to a peer the caller names: an operator's decision, like a migration.
  calibrate: ['operator'],
  calibrations: ['operator', 'viewer'],
  // The plan to a peer the caller names: the agent dials it, so not for viewers.
  plan: ['operator'],
  // Maintenance mode and drains move or refuse VMs: operators only; looking is for viewers too.
  maintenance: ['operator'],
  peers: ['operator', 'viewer'],
  startDrain: ['operator'],
  drains: ['operator', 'viewer'],
  drain: ['operator', 'viewer'],
  vms: ['operator', 'viewer'],
  startVm: ['operator'],
  vm: ['operator', 'viewer'],
  vmHealth: ['operator', 'viewer'],
  // An agent a VM left asks the host it went to: the console follows the VM.
  vmConsole: ['host', 'operator', 'viewer'],
  stopVm: ['operator'],
  migrations: ['operator', 'viewer'],
  startMigration: ['operator'],
  dryRun: ['operator'],
  migration: ['operator', 'viewer'],
  samples: ['operator', 'viewer'],
  abortMigration: ['operator'],
  forceComplete: ['operator'],
  outgoingState: ['host'],
  // A source agent asks before it prepares anything: what the destination's checks say.
  preflight: ['host'],
  prepareIncoming: ['host'],
  checkDisks: ['host'],
  resumeIncoming: ['host'],
  recoverIncoming: ['host'],
  completeIncoming: ['host'],
  incomingGuest: ['host'],
  abortIncoming: ['host'],
  metrics: ['operator', 'viewer', 'metrics'],
  tunnel: ['host'],
} as const satisfies Record<RouteName, readonly Role[]>;

const ENDPOINTS: Record<RouteName, string> = { ...API, ...OTHER_ROUTES };

/** The endpoint (`METHOD /path`) of a route. */
export function endpointOf(route: RouteName): string {
  return ENDPOINTS[route];
}

/** The route serving `endpoint`, if the table has one. */
export function routeNamed(endpoint: string): RouteName | undefined {
  return (Object.keys(ENDPOINTS) as RouteName[]).find((name) => ENDPOINTS[name] === endpoint);
}

/** Whether a certificate with `role` may call `route`. Pure: no framework, no socket. */
export function mayCall(role: Role | undefined, route: RouteName): boolean {
  return role !== undefined && (ROUTE_ROLES[route] as readonly Role[]).includes(role);
}

/**
 * The refusal for a caller the table does not let in, or undefined when it may
 * call. A route not in the table lets nobody in.
 */
export function accessRefusal(
  peer: { commonName: string; role: Role | undefined },
  endpoint: string,
): AuthError | undefined {
  const route = routeNamed(endpoint);
  if (peer.role === undefined) return noRoleError(peer.commonName, `it may not call ${endpoint}`);
  if (route !== undefined && mayCall(peer.role, route)) return undefined;
  const allowed = route === undefined ? [] : ROUTE_ROLES[route];
  return new AuthError(`${peer.role} ${JSON.stringify(peer.commonName)} may not call ${endpoint}`, {
    hint:
      allowed.length > 0
        ? `${endpoint} takes a certificate with role ${allowed.join(' or ')} (vmferry ca issue --role)`
        : `${endpoint} is not open to any certificate`,
  });
}

/** The table as rows of (endpoint, role, allowed), every role for every route: for docs and tests. */
export function accessMatrix(): { route: RouteName; endpoint: string; role: Role; allowed: boolean }[] {
  return (Object.keys(ROUTE_ROLES) as RouteName[]).flatMap((route) =>
    ROLES.map((role) => ({ route, endpoint: endpointOf(route), role, allowed: mayCall(role, route) })),
  );
}

/** The table as docs/security.md prints it (a test checks the document against this). */
export function routeTableMarkdown(): string {
  const rows = (Object.keys(ROUTE_ROLES) as RouteName[]).map(
    (route) =>
      `| \`${endpointOf(route)}\` | ${ROLES.map((role) => (mayCall(role, route) ? 'yes' : '-')).join(' | ')} |`,
  );
  return [
    `| route | ${ROLES.join(' | ')} |`,
    `| --- | ${ROLES.map(() => '---').join(' | ')} |`,
    ...rows,
  ].join('\n');
}
