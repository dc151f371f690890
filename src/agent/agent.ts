import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { guestKernelPath } from '../guest/index.js';
import { CertificateError, UsageError, describeError } from '../errors.js';
import { loadMigrationOptions, type ResolvedOptions } from '../config/index.js';
import { activeFailpoints } from '../failpoints.js';
import { decideRelayWorkers, decideTunnelRelay, type TunnelRelaySetting } from '../policy/index.js';
import { probeHost, type Accelerator, type HostInfo, type TunnelRelay } from '../qemu/index.js';
import { AgentClient, parseAgentEndpoint } from './agent-client.js';
import { AgentApi, type HostSummary } from './api-client.js';
import {
  checkTlsIdentity,
  writeQemuTlsCredsDir,
  type CertificateInfo,
  type TlsIdentity,
} from '../pki/index.js';
import { ApiServer } from './api-server.js';
import { HostFacts } from './preflight.js';
import { peerStatuses } from './peers.js';
import { Drains } from './drains.js';
import { IncomingMigrations } from './incoming.js';
import type { LogFn } from '../log/index.js';
import { AgentMetrics } from '../metrics/index.js';
import { openJournal, type Journal, type MigrationRecord } from './journal.js';
import { watchJournalWrites } from './journal-write-errors.js';
import { unexpectedRejection } from './unexpected-rejection.js';
import { JournalBacklog } from './journal-backlog.js';
import { keepJournalTrimmed } from './journal-retention.js';
import { AgentCalibrations } from './calibrations.js';
import { OutgoingMigrations } from './outgoing.js';
import { registerMetricsRoute, registerRoutes } from './routes.js';
import { linuxHostNetwork } from './tap-devices.js';
import { ROUTE_ROLES } from './route-access.js';
import { AgentTunnels } from './tunnels.js';
import { TlsFrontend, nativeRelayAvailability, type TransportEvent } from '../transport/index.js';
import { VmRegistry } from './vm-registry.js';
import { giveTo, layOutStateDirFor, lookUpQemuUser, postcopyAllowed, type QemuUser } from './qemu-user.js';
import { vmFileDirsFrom, type VmCapacity, type VmFileDirs } from './vm-confinement.js';

/** A kernel setting from /proc/sys, or undefined where it does not exist. */
function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(join('/proc/sys', name), 'utf8');
  } catch {
    return undefined;
  }
}

/** Where vmferry's own guest images are built (the calibration guest's kernel). */
const OWN_GUEST_IMAGES = dirname(guestKernelPath());

/** Peer agents whose clients are kept (least recently used dropped first). */
const MAX_PEERS = 32;

export interface AgentOptions {
  /** This host's name: the CN of its certificate. */
  name: string;
  listenHost: string;
  listenPort: number;
  stateDir: string;
  /** Where local disk images are (default STATE_DIR/instances). */
  instancesPath?: string;
  tls: TlsIdentity;
  /** Address destination QEMUs listen on for native migration streams (default: listenHost). */
  migrationAddress?: string;
  accel: Accelerator | 'auto';
  qemuBinary?: string;
  /** QEMU tls-creds-x509 directory; enables native TLS. */
  qemuTlsDir?: string;
  /** The operator's nova.conf options ([libvirt] and [vmferry]): how migrations run. */
  migrationOptions?: ResolvedOptions;
  /** The agents this one may send VMs to (https://HOST:PORT): `host list`, drains. */
  peers?: string[];
  /** Processes for TLS and tunnel relaying (default: the policy's decideRelayWorkers). */
  workers?: number;
  /** The relay of this agent's tunnel ends (default: [vmferry] tunnel_relay). */
  tunnelRelay?: TunnelRelaySetting;
  /** Where VM files may lie; default [vmferry] image_dirs and disk_dirs. */
  vmFileDirs?: VmFileDirs;
  /** Test mode (shared-memory VMs allowed); default [vmferry] test_mode. */
  testMode?: boolean;
  log?: LogFn;
}

/** How this host confines the VMs it runs, decided once at start-up. */
interface VmConfinement {
  vmFileDirs: VmFileDirs;
  testMode: boolean;
  capacity: VmCapacity;
  qemuUser: QemuUser | undefined;
}

/**
 * The confinement of this host's VMs from the agent's options: the directories
 * (symlinks resolved), test mode, capacity, and — when the agent runs as root —
 * QEMU's user, with the state directory laid out for it.
 */
function confinementFor(options: AgentOptions, o: ResolvedOptions): VmConfinement {
  const dirs = options.vmFileDirs ?? vmFileDirsFrom(o);
  const real = (dir: string): string => (existsSync(dir) ? realpathSync(dir) : dir);
  const configured = o['vmferry.max_vm_memory_mib'].value;
  const isRoot = process.getuid?.() === 0;
  const qemuUser = isRoot ? lookUpQemuUser(o['vmferry.qemu_user'].value ?? 'vmferry-qemu') : undefined;
  if (qemuUser !== undefined) {
    const instances = options.instancesPath ?? join(options.stateDir, 'instances');
    layOutStateDirFor(qemuUser, options.stateDir, options.qemuTlsDir, instances);
  }
  return {
    // vmferry's own guest images (the calibration guest) are always readable images.
    vmFileDirs: {
      imageDirs: [...new Set([...dirs.imageDirs, OWN_GUEST_IMAGES].map(real))],
      diskDirs: dirs.diskDirs.map(real),
    },
    testMode: options.testMode ?? o['vmferry.test_mode'].value,
    capacity: {
      host: options.name,
      memoryMiB: configured > 0 ? configured : Math.floor((totalmem() * 0.9) / 1024 / 1024),
      cpus: availableParallelism(),
    },
    qemuUser,
  };
}

/**
 * One host's vmferry agent: owns the VMs on this host, serves the API, and
 * migrates VMs to and from peer agents.
 */
export class Agent {
  readonly options: AgentOptions;
  readonly journal: Journal;
  /** Journal writes waiting for the disk (a migration past the point of no return goes on without them). */
  readonly backlog: JournalBacklog;
  readonly registry: VmRegistry;
  readonly outgoing: OutgoingMigrations;
  readonly incoming: IncomingMigrations;
  readonly calibrations: AgentCalibrations;
  readonly facts: HostFacts;
  readonly drains: Drains;
  private readonly api: ApiServer;
  private readonly peers = new Map<string, AgentApi>();
  private host: HostInfo | undefined;
  private readonly log: LogFn;
  private readonly tunnels: AgentTunnels;
  /** The relay this agent runs for its tunnel ends, decided at start-up. */
  readonly tunnelRelay: TunnelRelay;
  private frontendInstance: TlsFrontend | undefined;
  private readonly migrationOptions: ResolvedOptions;
  readonly metrics: AgentMetrics;
  /** What the front door's workers show the internal API: new at every start, never on disk. */
  private readonly internalApiSecret = randomBytes(32).toString('base64url');
  private stopRetention: () => void = () => undefined;
  /** The policy for rejections nothing handled (unexpectedRejection): log, count, keep serving, take the migration up. */
  private readonly onRejection = (reason: unknown): void =>
    unexpectedRejection(reason, {
      log: this.log,
      count: () => this.metrics.unexpectedRejection(),
      migrationState: (id) => this.journal.getMigration(id)?.state,
      takeUp: (id, why) => {
        const m = this.journal.getMigration(id);
        if (m !== undefined) void this.recoverMigration(m, why);
      },
      later: (fn) => void setTimeout(fn, 1000).unref(),
    });
  /** Migrations found queued at start-up: they go back in the queue once the agent serves. */
  private readonly queuedAtRestart: MigrationRecord[] = [];
  addresses: string[] = [];

  /** Where local disk images are on this host. */
  get instancesPath(): string {
    return this.options.instancesPath ?? join(this.options.stateDir, 'instances');
  }

  private constructor(
    options: AgentOptions,
    host: HostInfo,
    migrationOptions: ResolvedOptions,
    readonly confinement: VmConfinement,
  ) {
    this.options = options;
    this.host = host;
    this.migrationOptions = migrationOptions;
    const native = nativeRelayAvailability();
    this.tunnelRelay = decideTunnelRelay(
      options.tunnelRelay ?? migrationOptions['vmferry.tunnel_relay'].value,
      native,
    );
    this.tunnels = new AgentTunnels(() => this.frontend(), {
      stateDir: options.stateDir,
      tls: options.tls,
      listenHost: options.listenHost,
      relay: this.tunnelRelay.kind,
      nativeAvailable: native.available,
      tunnelRoles: ROUTE_ROLES.tunnel,
      onEvent: (e) => this.onTransportEvent(e),
      ...(confinement.qemuUser !== undefined ? { qemuUser: confinement.qemuUser } : {}),
    });
    this.log = options.log ?? ((line) => process.stderr.write(`vmferry-agent[${options.name}]: ${line}\n`));
    mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.instancesPath, { recursive: true, mode: 0o700 });
    const now = (): number => Date.now();
    this.metrics = new AgentMetrics({
      liveMigrations: () => this.outgoing.live(),
      guestHealth: () =>
        this.registry.list().map((vm) => ({ vm: vm.spec.name, health: this.registry.view(vm).guest.health })),
    });
    this.backlog = openAgentJournal(options.stateDir, now, this.metrics, this.log);
    this.journal = this.backlog.journal;
    this.registry = this.newRegistry(host);
    this.facts = new HostFacts({
      summary: () => this.summary(),
      registry: this.registry,
      reservedHostMiB: this.migrationOptions['DEFAULT.reserved_host_memory_mb'].value,
    });
    this.incoming = this.incomingMigrations();
    this.outgoing = this.newOutgoing();
    this.drains = new Drains({
      hostName: options.name,
      journal: this.journal,
      registry: this.registry,
      outgoing: this.outgoing,
      peerApi: (address) => this.peer(address),
      peers: () => this.options.peers ?? [],
      setMaintenance: (on) => this.setMaintenance(on),
      log: this.log,
    });
    this.calibrations = this.newCalibrations();
    this.api = this.newApi();
  }

  /** The source half of this host's migrations, queued by nova's max_concurrent_live_migrations. */
  private newOutgoing(): OutgoingMigrations {
    return new OutgoingMigrations({
      hostName: this.options.name,
      registry: this.registry,
      journal: this.journal,
      backlog: this.backlog,
      peerApi: (address) => this.peer(address),
      sourceAddress: () => this.publicAddress(),
      migrationOptions: this.migrationOptions,
      hostSummary: () => this.summary(),
      tunnels: this.tunnels,
      qemuTlsDir: this.options.qemuTlsDir,
      dirtyRateSampleSeconds: this.migrationOptions['vmferry.dirty_rate_sample_seconds'].value,
      sampleIntervalMs: this.migrationOptions['vmferry.sample_interval_ms'].value,
      log: this.log,
      observer: this.metrics,
      transportFigures: (to) => this.calibrations.figuresTo(to),
      maxConcurrent: this.migrationOptions['DEFAULT.max_concurrent_live_migrations'].value,
      peers: this.options.peers ?? [],
    });
  }

  private newCalibrations(): AgentCalibrations {
    return new AgentCalibrations({
      registry: this.registry,
      journal: this.journal,
      outgoing: this.outgoing,
      peerApi: (address) => this.peer(address),
      hostSummary: () => this.summary(),
      migrationOptions: this.migrationOptions,
      relayStats: () => this.frontend().stats(),
    });
  }

  /** The agent's HTTP API (served behind the mutual-TLS front door): its routes over this agent's parts, and the metrics. */
  private newApi(): ApiServer {
    const api = new ApiServer(this.internalApiSecret);
    registerRoutes(api, {
      hostName: this.options.name,
      hostInfo: () => this.summary(),
      peerApi: (address) => this.peer(address),
      registry: this.registry,
      journal: this.journal,
      outgoing: this.outgoing,
      incoming: this.incoming,
      calibrations: this.calibrations,
      facts: this.facts,
      maintenance: {
        get: () => this.maintenance,
        set: (on) => this.setMaintenance(on),
      },
      drains: this.drains,
      peers: async () => ({
        self: this.summary(),
        peers: await peerStatuses(this.options.peers ?? [], (address) => this.peer(address)),
      }),
    });
    registerMetricsRoute(api, this.metrics);
    return api;
  }

  /** The destination half: its own say on streams (clear text, address, how many at once) from its options. */
  private incomingMigrations(): IncomingMigrations {
    const { options } = this;
    return new IncomingMigrations({
      facts: this.facts,
      hostName: options.name,
      migrationAddress: options.migrationAddress ?? options.listenHost,
      migrationAddressConfigured: options.migrationAddress !== undefined,
      permitCleartext: this.migrationOptions['vmferry.permit_cleartext'].value,
      maxIncoming: this.migrationOptions['vmferry.max_incoming_migrations'].value,
      registry: this.registry,
      journal: this.journal,
      backlog: this.backlog,
      tunnels: this.tunnels,
      qemuTlsDir: options.qemuTlsDir,
      log: this.log,
      sourceApi: (address, peerName) =>
        new AgentApi(new AgentClient(address, this.options.tls, { peerName })),
      orphanCheckMs: this.migrationOptions['vmferry.orphan_check_seconds'].value * 1000,
    });
  }

  /** The VMs of this host, started with the machine types and CPU models its QEMU offers. */
  private newRegistry(host: HostInfo): VmRegistry {
    return new VmRegistry({
      hostName: this.options.name,
      stateDir: this.options.stateDir,
      instancesPath: this.instancesPath,
      accel: host.accelerator,
      specDefaults: {
        accelerator: host.accelerator,
        machines: host.machines,
        cpuModels: host.cpuModels,
        ...(host.kvmCpuModels !== undefined ? { kvmCpuModels: host.kvmCpuModels } : {}),
      },
      network: linuxHostNetwork,
      qemuBinary: this.options.qemuBinary,
      journal: this.journal,
      backlog: this.backlog,
      log: this.log,
      ...this.confinement,
    });
  }

  /** Probes the host, reattaches to surviving VMs, settles interrupted migrations, and starts serving. */
  static async start(options: AgentOptions): Promise<Agent> {
    checkOwnCertificate(options.tls, options.name);
    const migrationOptions = options.migrationOptions ?? loadMigrationOptions(undefined);
    mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
    const confinement = confinementFor(options, migrationOptions);
    const probed = await probeHost({
      qemuBinary: options.qemuBinary,
      tlsCredsDir: options.qemuTlsDir,
      accel: options.accel,
    });
    const noPostcopy = postcopyAllowed(
      confinement.qemuUser ?? { name: 'the agent user', uid: process.getuid?.() ?? 0 },
      readSysctl('vm/unprivileged_userfaultfd'),
    );
    const host = noPostcopy === undefined ? probed : { ...probed, postcopy: false };
    const agent = new Agent(options, host, migrationOptions, confinement);
    process.on('unhandledRejection', agent.onRejection);
    if (noPostcopy !== undefined) agent.log(`warning: ${noPostcopy}`);
    try {
      await agent.recover();
      agent.stopRetention = keepJournalTrimmed(agent.journal, {
        days: agent.migrationOptions['vmferry.journal_retention_days'].value,
        log: agent.log,
      });
      const internalApiPath = join(options.stateDir, 'api.sock');
      await agent.api.listen(internalApiPath);
      const frontend = await TlsFrontend.start({
        tls: options.tls,
        listen: { host: options.listenHost, port: options.listenPort },
        localPath: join(options.stateDir, 'agent.sock'),
        internalApiPath,
        internalApiSecret: agent.internalApiSecret,
        tunnelRoles: ROUTE_ROLES.tunnel,
        maxConnections: agent.migrationOptions['vmferry.max_connections'].value,
        workers: decideRelayWorkers({ cpus: availableParallelism(), configured: options.workers }).value,
        onEvent: (e) => agent.onTransportEvent(e),
      });
      agent.frontendInstance = frontend;
      const bound = frontend.address;
      if (bound !== undefined)
        agent.addresses.push(
          `https://${bound.host.includes(':') ? `[${bound.host}]` : bound.host}:${bound.port}`,
        );
      agent.addresses.push(`unix:${frontend.localPath ?? ''}`);
      writeFileSync(
        join(options.stateDir, 'agent.json'),
        `${JSON.stringify({ name: options.name, pid: process.pid, addresses: agent.addresses }, null, 2)}\n`,
      );
      agent.log(`listening on ${agent.addresses.join(' and ')} (accelerator ${host.accelerator})`);
      agent.incoming.watchOrphans();
      for (const m of agent.queuedAtRestart.splice(0)) agent.outgoing.requeueAfterRestart(m);
      agent.drains.resume();
      agent.announceConfinement();
      agent.log(`tunnel relay: ${agent.tunnelRelay.kind}, ${agent.tunnelRelay.reason}`);
      for (const [point, action] of activeFailpoints())
        agent.log(
          `warning: test failpoint ${point} is set (${action === 'hold' ? 'held' : `${action} ms delay`}): not for production`,
          {
            level: 'warn',
          },
        );
    } catch (err) {
      await agent.close();
      throw err;
    }
    return agent;
  }

  /** Says at start-up how VMs are confined here, and warns of test mode. */
  private announceConfinement(): void {
    const { vmFileDirs, qemuUser, capacity, testMode } = this.confinement;
    this.log(
      `VM files from ${vmFileDirs.imageDirs.join(', ') || 'nowhere'} (images) and ${vmFileDirs.diskDirs.join(', ') || 'nowhere'} (disks); ` +
        `QEMU runs sandboxed as ${qemuUser?.name ?? 'the agent user'}; VMs get up to ${capacity.memoryMiB} MiB in all and ${capacity.cpus} vCPUs each`,
    );
    if (testMode)
      this.log(
        'warning: test mode: VM specs may map guest RAM from a shared file (memoryBackend file): not for production',
      );
  }

  get hostInfo(): HostInfo {
    if (this.host === undefined) throw new Error('host not probed');
    return this.host;
  }

  summary(): HostSummary {
    const h = this.hostInfo;
    return {
      name: this.options.name,
      accelerator: h.accelerator,
      acceleratorReason: h.acceleratorReason,
      qemuVersion: h.qemuVersion,
      nativeTls: h.nativeTls,
      multifd: h.multifd,
      postcopy: h.postcopy,
      autoConverge: h.autoConverge,
      tunnelRelay: this.tunnelRelay,
      migrationCapabilities: h.migrationCapabilities,
      transports: ['native', 'tunnelled'],
      cpus: availableParallelism(),
      machines: h.machines.map((m) => m.name),
      cpuModels: h.cpuModels,
      hostCpu: h.hostCpu,
      capacity: this.facts.capacity(),
      maintenance: this.maintenance,
      vms: this.registry.list().length,
      migrations: { ...this.outgoing.counts(), incoming: this.incoming.count() },
    };
  }

  /** In maintenance mode (kept in the journal across restarts) the host takes no incoming migration and no new VM. */
  get maintenance(): boolean {
    return this.journal.getSetting('maintenance') === 'on';
  }

  setMaintenance(on: boolean): { maintenance: boolean } {
    this.journal.setSetting('maintenance', on ? 'on' : 'off');
    this.log(on ? 'maintenance mode on: no incoming migration, no new VM' : 'maintenance mode off');
    return { maintenance: on };
  }

  /** Graceful stop (SIGTERM): aborts outgoing migrations, so their VMs stay here and run, then closes. */
  async shutdown(): Promise<void> {
    await this.outgoing.abortAll('the source agent is shutting down');
    await this.close();
  }

  /** Stops serving; VMs keep running (their QEMU processes belong to the host). */
  async close(): Promise<void> {
    process.off('unhandledRejection', this.onRejection);
    this.incoming.stopWatchingOrphans();
    this.stopRetention();
    await this.frontendInstance?.close();
    await this.api.close();
    for (const peer of this.peers.values()) peer.close();
    this.registry.detachAll();
    this.backlog.close();
    this.journal.close();
  }

  /**
   * Takes a new TLS identity from the same directory (a rotated certificate, a new
   * CRL from `vmferry ca revoke`) without a restart: peers, the front door's workers
   * and QEMU's TLS files use it from now on; established connections keep theirs.
   * Refused, keeping the old one, if it is broken or names another host.
   */
  async reloadTls(tls: TlsIdentity): Promise<void> {
    const cert = checkOwnCertificate(tls, this.options.name);
    this.options.tls = tls;
    this.tunnels.setTls(tls);
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
    await this.frontend().reloadTls(tls);
    if (this.options.qemuTlsDir !== undefined) {
      await writeQemuTlsCredsDir(this.options.qemuTlsDir, tls);
      if (this.confinement.qemuUser !== undefined) giveTo(this.confinement.qemuUser, this.options.qemuTlsDir);
    }
    this.log(
      `TLS identity reloaded: ${cert.commonName}, expires ${cert.notAfter.toISOString()}${tls.crl !== undefined ? ', with a CRL' : ''}`,
    );
  }

  /** This agent's address as peers reach it, unless it listens on a wildcard address. */
  private publicAddress(): string | undefined {
    return this.addresses.find(
      (a) => a.startsWith('https://') && !/^https:\/\/(0\.0\.0\.0|\[::\])[:/]/.test(a),
    );
  }

  private frontend(): TlsFrontend {
    if (this.frontendInstance === undefined) throw new Error('the TLS front door is not running yet');
    return this.frontendInstance;
  }

  private onTransportEvent(e: TransportEvent): void {
    if (e.type === 'worker-exited') this.metrics.relayWorkerRestarted();
    if (e.type === 'tunnel-refused') this.metrics.tunnelRefused(e.status);
    if (e.type === 'worker-started') return;
    const migration = 'migrationId' in e && typeof e.migrationId === 'string' ? e.migrationId : undefined;
    this.log(`transport: ${JSON.stringify(e)}`, {
      level: e.type === 'worker-exited' || e.type === 'tunnel-refused' ? 'warn' : 'info',
      ...(migration !== undefined ? { migration } : {}),
    });
  }

  /**
   * The API of the agent at `address`: an https:// address whose certificate is a
   * host's naming that address (a local socket would skip the address check). At
   * most MAX_PEERS are kept, the least recently used dropped first: the addresses
   * come from operators, and each client holds connections.
   */
  private peer(address: string): AgentApi {
    let api = this.peers.get(address);
    if (api !== undefined) {
      this.peers.delete(address);
      this.peers.set(address, api);
      return api;
    }
    const endpoint = parseAgentEndpoint(address);
    if (endpoint.socketPath !== undefined) {
      throw new UsageError(`a migration goes to an agent's https:// address, not to ${address}`, {
        hint: 'a peer is known by its certificate, checked against the address dialled: use https://HOST:PORT',
      });
    }
    api = new AgentApi(new AgentClient(endpoint, this.options.tls));
    this.peers.set(address, api);
    for (const [oldest] of this.peers) {
      if (this.peers.size <= MAX_PEERS) break;
      // Not closed: a migration may still use it; its idle connections time out at the peer.
      this.peers.delete(oldest);
    }
    return api;
  }

  /**
   * After a restart: reattach VMs, then take up every migration the previous
   * process left unfinished (recoverMigration).
   */
  private async recover(): Promise<void> {
    await this.registry.reattach();
    for (const m of this.journal.listMigrations({ active: true })) {
      // A queued migration started nothing anywhere: it keeps its place once the agent serves.
      if (m.role === 'source' && m.state === 'queued') this.queuedAtRestart.push(m);
      else await this.recoverMigration(m, 'the agent restarted while the migration was in flight');
    }
  }

  /**
   * Takes up a migration nothing drives any more, from its record and its QEMU.
   * Not every migration in flight can be called off: once the destination may run
   * the guest (a hand-over begun, post-copy), it is settled with the other host or
   * finished; before that, the source guest runs on and the destination drops its copy.
   */
  private async recoverMigration(m: MigrationRecord, reason: string): Promise<void> {
    try {
      if (m.role === 'source') await this.outgoing.takeUp(m, reason);
      else await this.incoming.takeUp(m, reason);
    } catch (err) {
      this.log(`migration ${m.id} could not be taken up (${reason}): ${describeError(err)}`, {
        level: 'error',
        migration: m.id,
        vm: m.vm,
      });
    }
  }
}

/**
 * The agent's journal: every failed write counted and logged, and writes that must
 * not stop what they record waiting for the disk (JournalBacklog).
 */
function openAgentJournal(
  stateDir: string,
  now: () => number,
  metrics: AgentMetrics,
  log: LogFn,
): JournalBacklog {
  const watched = watchJournalWrites(openJournal(join(stateDir, 'journal.sqlite'), { now }), (err) => {
    metrics.journalWriteFailed();
    log(`journal write failed: ${describeError(err)}`, { level: 'error' });
  });
  return new JournalBacklog(watched, { log });
}

/**
 * Checks an agent's TLS identity and that its certificate carries the agent's name:
 * peers check the name against the certificate (tunnel, QEMU TLS, the destination
 * API), so a mismatch would otherwise only show at the first migration.
 */
function checkOwnCertificate(tls: TlsIdentity, name: string): CertificateInfo {
  const cert = checkTlsIdentity(tls);
  if (cert.role !== 'host') {
    throw new CertificateError(
      `the agent's certificate (CN=${cert.commonName}) ${cert.role === undefined ? 'names no role' : `has role ${cert.role}`}: an agent needs a host certificate`,
      {
        hint: `issue one: vmferry ca issue CA_DIR --name ${cert.commonName} --role host --ip ADDRESS${cert.role === undefined ? ' --force' : ''}`,
      },
    );
  }
  if (cert.commonName !== name) {
    throw new UsageError(
      `agent name ${JSON.stringify(name)} is not the name in its certificate (CN=${cert.commonName})`,
      {
        hint: `run the agent as --name ${cert.commonName} ([vmferry] agent_name), or issue a certificate for it: vmferry ca issue CA_DIR --name ${name} --role host`,
      },
    );
  }
  return cert;
}
