import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import { parseVmSpec } from '../qemu/index.js';
import { API, type AgentApi, type PeersView } from './api-client.js';
import { validateConsoleTail, type ConsoleTail } from './console-log.js';
import { Reply, type ApiRequest, type ApiServer } from './api-server.js';
import type { AgentMetrics } from '../metrics/index.js';
import type { IncomingMigrations } from './incoming.js';
import type { DrainRequest, Drains } from './drains.js';
import { validatePreflightRequest, type HostFacts } from './preflight.js';
import type { Journal } from './journal.js';
import type { MigrationOverrides } from '../policy/index.js';
import type { AgentCalibrations } from './calibrations.js';
import type { OutgoingMigrations } from './outgoing.js';
import type { VmRegistry } from './vm-registry.js';

export interface RouteDeps {
  hostName: string;
  hostInfo: () => unknown;
  /** The API of a peer agent (to read the console of a VM that moved there). */
  peerApi: (address: string) => AgentApi;
  registry: VmRegistry;
  journal: Journal;
  outgoing: OutgoingMigrations;
  incoming: IncomingMigrations;
  calibrations: AgentCalibrations;
  facts: HostFacts;
  maintenance: { get: () => boolean; set: (on: boolean) => { maintenance: boolean } };
  /** This host and its configured peers, each asked now. */
  peers: () => Promise<PeersView>;
  drains: Drains;
}

/** GET /metrics: Prometheus text, through the same mutual-TLS front door as the API. */
export function registerMetricsRoute(api: ApiServer, metrics: AgentMetrics): void {
  api.route(API.metrics, async () => {
    const { contentType, body } = await metrics.text();
    return new Reply(200, body, contentType);
  });
}
/** How many migrations away a console is looked for. */
const CONSOLE_HOPS = 4;

/** The agent's HTTP API, one line per endpoint of {@link API}. */
export function registerRoutes(api: ApiServer, d: RouteDeps): void {
  api
    .route(API.host, () => Promise.resolve(d.hostInfo()))
    .route(API.calibrate, (req) => {
      const b = req.body as { peer: string; memoryMiB?: number; runs?: number };
      return d.calibrations.calibrate(b.peer, b);
    })
    .route(API.calibrations, (req) =>
      Promise.resolve({ calibrations: d.calibrations.list(req.query.get('peer') ?? undefined) }),
    )
    .route(API.plan, (req) => {
      const b = req.body as { to: string; memoryMiB: number };
      return d.calibrations.planTo(b.to, b.memoryMiB);
    })
    .route(API.vms, () => Promise.resolve({ vms: d.registry.list().map((vm) => d.registry.view(vm)) }))
    .route(API.peers, () => d.peers())
    .route(API.startDrain, async (req) => new Reply(202, await d.drains.start(req.body as DrainRequest)))
    .route(API.drains, () => Promise.resolve({ drains: d.drains.list() }))
    .route(API.drain, (req) => Promise.resolve(d.drains.get(req.params.id ?? '')))
    .route(API.maintenance, (req) => Promise.resolve(d.maintenance.set((req.body as { on: boolean }).on)))
    .route(API.startVm, async (req) => {
      if (d.maintenance.get()) {
        throw new ConflictError(`${d.hostName} is in maintenance mode: it starts no new VM`, {
          hint: 'start it on another host, or end maintenance: vmferry host maintenance off',
        });
      }
      const vm = await d.registry.start(parseVmSpec(req.body));
      return new Reply(201, d.registry.view(vm));
    })
    .route(API.vm, (req) => Promise.resolve(d.registry.view(d.registry.get(req.params.name ?? ''))))
    .route(API.vmHealth, async (req) => {
      const vm = d.registry.get(req.params.name ?? '');
      const afterSeq = optionalInt(req.query.get('afterSeq'), 'afterSeq');
      const minOk = optionalInt(req.query.get('minOk'), 'minOk') ?? 3;
      const waitMs = optionalInt(req.query.get('waitMs'), 'waitMs') ?? 0;
      return vm.guest.waitHealthy({ afterSeq, minOk, timeoutMs: Math.min(waitMs, 120_000) });
    })
    .route(API.vmConsole, (req) => vmConsole(req, d))
    .route(API.stopVm, async (req) => {
      await d.registry.stop(req.params.name ?? '');
      return { stopped: req.params.name };
    })
    .route(API.migrations, () => Promise.resolve({ migrations: d.journal.listMigrations({}) }))
    .route(API.startMigration, async (req) => {
      const { vm, to, overrides } = migrationRequest(req.body);
      const started = await d.outgoing.start(vm, to, overrides);
      return new Reply(202, started);
    })
    .route(API.dryRun, async (req) => {
      const { vm, to, overrides } = migrationRequest(req.body);
      return d.outgoing.dryRun(vm, to, overrides);
    })
    .route(API.migration, (req) => {
      const id = req.params.id ?? '';
      const record = d.journal.getMigration(id);
      if (record === undefined) throw new NotFoundError(`no migration ${id} on this host`);
      return Promise.resolve({
        ...record,
        events: d.journal.migrationEvents(id),
        live: d.outgoing.liveProgress(id),
      });
    })
    .route(API.samples, (req) => Promise.resolve({ samples: d.journal.samples(req.params.id ?? '') }))
    .route(API.abortMigration, (req) => {
      d.outgoing.abort(req.params.id ?? '');
      return Promise.resolve(new Reply(202, { aborting: req.params.id }));
    })
    .route(API.forceComplete, (req) => {
      d.outgoing.forceComplete(req.params.id ?? '');
      return Promise.resolve(new Reply(202, { forcing: req.params.id }));
    })
    .route(API.outgoingState, (req) => {
      const id = req.params.id ?? '';
      const record = d.journal.getMigration(id);
      if (record?.role !== 'source') throw new NotFoundError(`no outgoing migration ${id} on this host`);
      return Promise.resolve({ state: record.state });
    });
  registerIncomingRoutes(api, d);
}

/** The source's console, sent when the guest starts on the destination (absent from older sources). */
function handOverTail(body: unknown): ConsoleTail | undefined {
  const tail = (body as { consoleTail?: unknown } | undefined)?.consoleTail;
  return tail === undefined ? undefined : validateConsoleTail(tail);
}

/** The destination's endpoints, which only the source agent that prepared a migration may call. */
function registerIncomingRoutes(api: ApiServer, d: RouteDeps): void {
  api
    .route(API.preflight, (req) =>
      Promise.resolve({ host: d.hostName, checks: d.facts.check(validatePreflightRequest(req.body)) }),
    )
    .route(API.prepareIncoming, (req) => d.incoming.prepare(req.body, req.peer.commonName))
    .route(API.checkDisks, async (req) => ({ disks: await d.incoming.checkDisks(req.body) }))
    .route(API.resumeIncoming, async (req) => {
      d.incoming.authorize(req.params.id ?? '', req.peer.commonName);
      await d.incoming.resume(req.params.id ?? '', handOverTail(req.body));
      return {};
    })
    .route(API.recoverIncoming, (req) => d.incoming.recover(req.params.id ?? '', req.peer.commonName))
    .route(API.completeIncoming, async (req) => {
      d.incoming.authorize(req.params.id ?? '', req.peer.commonName);
      await d.incoming.complete(req.params.id ?? '', handOverTail(req.body));
      return {};
    })
    .route(API.incomingGuest, (req) => {
      d.incoming.authorize(req.params.id ?? '', req.peer.commonName);
      return d.incoming.guestHealth(req.params.id ?? '');
    })
    .route(API.abortIncoming, async (req) => {
      d.incoming.authorize(req.params.id ?? '', req.peer.commonName);
      const reason = (req.body as { reason?: unknown } | undefined)?.reason;
      await d.incoming.abort(req.params.id ?? '', typeof reason === 'string' ? reason : 'no reason given');
      return {};
    });
}

/** A VM's console: here, or where it went (which may have passed it on), up to CONSOLE_HOPS away. */
async function vmConsole(req: ApiRequest, d: RouteDeps): Promise<unknown> {
  const name = req.params.name ?? '';
  const after = optionalInt(req.query.get('after'), 'after');
  const lines = optionalInt(req.query.get('lines'), 'lines');
  if (d.registry.has(name)) {
    return { vm: name, host: d.hostName, ...d.registry.console(name, { after, lines }) };
  }
  // It ran here and migrated away: its console is where it went (which may have passed it on).
  const hops = optionalInt(req.query.get('hops'), 'hops') ?? 0;
  const last = d.journal.listMigrations({ vm: name })[0];
  // 'completing': the hand-over is done or in doubt and the VM is no longer here, so it runs there.
  const movedAway = last?.role === 'source' && ['completed', 'completing'].includes(last.state);
  if (last === undefined || !movedAway || hops >= CONSOLE_HOPS) {
    throw new NotFoundError(`no VM named ${name} on this host`);
  }
  return d.peerApi(last.peer).vmConsole(name, { after, lines, hops: hops + 1 });
}

function migrationRequest(body: unknown): { vm: string; to: string; overrides: MigrationOverrides } {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b.vm !== 'string') throw new UsageError('vm (the name of the VM to migrate) is required');
  if (typeof b.to !== 'string') throw new UsageError('to (the destination agent address) is required');
  const overrides = (
    typeof b.options === 'object' && b.options !== null ? b.options : {}
  ) as MigrationOverrides;
  return { vm: b.vm, to: b.to, overrides };
}

function optionalInt(value: string | null, name: string): number | undefined {
  if (value === null || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}
