import { mirrorPrefix, type DiskSample } from '../block/index.js';
import { LimitError, MigrationError, describeError } from '../errors.js';
import type { Failpoint } from '../failpoints.js';
import { completionTimeoutReached, type MigrationSettings } from '../policy/index.js';
import type { QmpClient, QmpEvent } from '../qemu/index.js';
import type { Clock } from './clock.js';
import { diskStallLimit, trackCopy, type CopyState } from './convergence.js';
import { DiskCopy, type DiskCopyPlan } from './disk-copy.js';
import type { Forecast } from './forecast.js';
import { settleHandOver } from './handover.js';
import { initialMonitorState, nextAction, type MonitorState } from './next-action.js';
import { finishPostcopy } from './postcopy.js';
import { configureMigration } from './qemu-setup.js';
import { toSample, type QueryMigrate } from './query-migrate.js';
import { restoreSourceGuest } from './source-recovery.js';
import { closeTransport, type TransportFactory, type TransportSession } from './transport-session.js';
import {
  isTerminalMigrationState,
  type GuestVerdict,
  type IncomingReply,
  type IncomingRequest,
  type MigrationReport,
  type MigrationSample,
  type MigrationState,
} from './types.js';

/** The destination agent, as the source driver sees it. */
export interface DestinationPeer {
  readonly name: string;
  prepare(request: IncomingRequest): Promise<IncomingReply>;
  /** Post-copy: the destination must run the guest as soon as the switch happened. */
  resume(migrationId: string): Promise<void>;
  /** Post-copy lost its stream: the destination listens again; connect there to resume. */
  recover(migrationId: string): Promise<IncomingReply>;
  /** Pre-copy completed: start the guest there. */
  complete(migrationId: string): Promise<void>;
  /** The guest's own verdict on the destination after the move (waits for its heartbeats). */
  guestHealth(migrationId: string): Promise<GuestVerdict>;
  /**
   * Give up: the destination kills its incoming QEMU and forgets it ('dropped'), unless
   * the guest already runs there ('running': hand-over done or post-copy); then it keeps it.
   */
  abort(migrationId: string, reason: string): Promise<'dropped' | 'running'>;
}

/** Receives state changes and samples (the agent writes them to its journal). */
export interface MigrationRecorder {
  state(state: MigrationState, message: string): void;
  sample(sample: MigrationSample): void;
}

export interface SourceMigrationDeps {
  id: string;
  /** This host's agent name. */
  sourceHost: string;
  request: Omit<IncomingRequest, 'migrationId' | 'sourceHost'>;
  settings: MigrationSettings;
  qmp: QmpClient;
  peer: DestinationPeer;
  openTransport: TransportFactory;
  recorder: MigrationRecorder;
  clock: Clock;
  /** QEMU's tls-creds-x509 directory on this host (native TLS). */
  tlsCredsDir?: string | undefined;
  /** How often QEMU is asked for progress (and a sample recorded), ms; QEMU's events wake the driver sooner. */
  pollMs?: number;
  /** Samples the guest and predicts convergence before the migration starts. */
  forecast?: () => Promise<Forecast>;
  /**
   * A trial (`vmferry host calibrate`): once QEMU sent everything, the destination
   * drops its copy and the guest goes on here, instead of the hand-over.
   */
  trial?: boolean;
  /** Block migration: the disks to copy and the way to the destination's NBD server. */
  disks?: DiskCopyPlan | undefined;
  /** The tests' fault injection (src/failpoints.ts): waits at the named points of a migration. */
  failpoint?: (name: Failpoint) => Promise<void>;
}

/** What one run has learnt so far, for the steps after it and the report. */
interface RunFacts {
  startedAt: number;
  /** Block migration: when the disk copies started (timeouts and samples count from it, as nova's do). */
  copyingSince?: number;
  /** Block migration: when every disk was in step. */
  disksInStepAt?: number;
  /** The destination's answer to prepare. */
  reply?: IncomingReply;
  diskCopy?: DiskCopy;
  /** When QEMU started sending: timeouts, samples and throughput count from it, as nova's monitor does. */
  sendingSince?: number;
  transport?: TransportSession;
  destinationPrepared: boolean;
  /** The destination answered 429 to the prepare: nothing was started there. */
  destinationBusy?: boolean;
  /** Seconds after the start of sending at which QEMU switched to post-copy. */
  switchedAt?: number;
  pausedAt?: number;
  completedAt?: number;
  resumedDestinationAt?: number;
  maxThrottle: number;
  /** QEMU's last answer, with the last RAM figures it gave. */
  lastInfo: QueryMigrate;
  tlsObject?: string;
}

/**
 * Drives one outgoing live migration from the source host: prepare (the guest
 * runs, the forecast, the destination prepares, a transport to it) -> configure
 * QEMU -> migrate, asking nextAction what to do after each look at QEMU (and in
 * post-copy, finishPostcopy) -> hand-over -> report. On every failure before the
 * guest may have started on the destination, the source guest is left running
 * and the destination is told to clean up. After that point it is finished, not
 * undone: a lost hand-over answer is settled with the destination and a broken
 * post-copy stream is resumed.
 */
export class SourceMigration {
  private readonly deps: SourceMigrationDeps;
  private monitor: MonitorState;
  private wake: (() => void) | undefined;
  private readonly events: string[] = [];
  private latest: MigrationSample | undefined;
  private state: MigrationState = 'preparing';
  private forecastSummary: string | undefined;
  /** The destination's host name once it answered (its address until then). */
  private destinationName: string;
  private readonly facts: RunFacts;
  /** The failpoints passed (each once per migration). */
  private readonly passed = new Set<Failpoint>();

  constructor(deps: SourceMigrationDeps) {
    this.deps = deps;
    this.destinationName = deps.peer.name;
    this.monitor = initialMonitorState(deps.settings);
    this.facts = { startedAt: deps.clock.now(), destinationPrepared: false, maxThrottle: 0, lastInfo: {} };
  }

  get progress(): { state: MigrationState; sample: MigrationSample | undefined } {
    return { state: this.state, sample: this.latest };
  }

  /** Operator abort: cancel unless post-copy has already started (then it cannot be undone). */
  abort(reason = 'aborted by the operator'): void {
    if (this.monitor.abort === undefined)
      this.monitor = { ...this.monitor, abort: { reason, byOperator: true } };
    this.wake?.();
  }

  /** Operator force-complete: post-copy when enabled for this migration, else pause the guest. */
  forceComplete(): void {
    this.monitor = { ...this.monitor, forceRequested: true };
    this.wake?.();
  }

  async run(): Promise<MigrationReport> {
    this.facts.startedAt = this.deps.clock.now();
    try {
      await this.prepare();
      await this.configureQemu();
      await this.copyDisks();
      await this.migrate();
      if (this.deps.trial === true) return await this.endTrial();
      this.setState('completing', `QEMU finished sending; starting the guest on ${this.deps.peer.name}`);
      this.facts.completedAt = this.deps.clock.now();
      await this.handOver();
      return await this.completedReport();
    } catch (err) {
      return await this.failedReport(err);
    } finally {
      await closeTransport(this.facts.transport);
      await this.facts.diskCopy?.close();
      const { tlsObject } = this.facts;
      if (tlsObject !== undefined)
        await this.deps.qmp.execute('object-del', { id: tlsObject }).catch(() => undefined);
    }
  }

  /** The guest runs here, the forecast is made, the destination prepared, a transport open to it. */
  private async prepare(): Promise<void> {
    const { deps } = this;
    const status = await deps.qmp.execute<{ status: string; running: boolean }>('query-status');
    if (!status.running)
      throw new MigrationError(`VM ${deps.request.spec.name} is not running on the source`);
    if (deps.forecast !== undefined) await this.makeForecast(deps.forecast);
    this.setState('preparing', `asking ${deps.peer.name} to prepare an incoming VM`);
    await this.failpoint('outgoing.prepare');
    const reply = await deps.peer
      .prepare({
        ...deps.request,
        migrationId: deps.id,
        sourceHost: deps.sourceHost,
      })
      .catch((err: unknown) => {
        if (err instanceof LimitError) this.facts.destinationBusy = true;
        throw err;
      });
    this.facts.destinationPrepared = true;
    this.facts.reply = reply;
    this.destinationName = reply.destinationHost;
    this.throwIfAborted();
    this.facts.transport = await deps.openTransport(reply);
  }

  private async makeForecast(forecast: () => Promise<Forecast>): Promise<void> {
    const { settings } = this.deps;
    this.setState('preparing', 'sampling the guest dirty rate for the forecast');
    const made = await forecast().catch((err: unknown) => {
      this.events.push(`no forecast: ${describeError(err)}`);
      return undefined;
    });
    this.forecastSummary = made?.summary;
    const helped = settings.autoConverge || settings.postCopy || settings.timeoutAction === 'force_complete';
    if (made !== undefined && !made.converges && !helped) {
      this.events.push(`warning: forecast says this migration ${made.summary}`);
      this.deps.recorder.state('preparing', `warning: ${made.summary}`);
    }
    this.throwIfAborted();
  }

  private async configureQemu(): Promise<void> {
    const { deps } = this;
    this.facts.tlsObject = await configureMigration(
      deps.qmp,
      {
        role: 'source',
        settings: deps.settings,
        downtimeLimitMs: this.monitor.downtimeLimitMs,
        destinationHost: this.destinationName,
        pauseBeforeSwitchover: this.copiesDisks,
      },
      { objectId: `vmf-tls-${deps.id.slice(0, 8)}`, credsDir: deps.tlsCredsDir, host: deps.sourceHost },
    );
  }

  private get copiesDisks(): boolean {
    return (this.deps.disks?.disks.length ?? 0) > 0;
  }

  /**
   * Block migration: mirrors every copied disk into the destination's new image
   * and waits until all are in step; the memory goes after. Counts against the
   * completion timeout, as nova's monitor counts libvirt's disk copy.
   */
  private async copyDisks(): Promise<void> {
    const { deps, facts } = this;
    const plan = deps.disks;
    if (plan === undefined || !this.copiesDisks || facts.reply === undefined) return;
    facts.copyingSince = deps.clock.now();
    facts.diskCopy = await DiskCopy.start(deps.qmp, plan, facts.reply, {
      prefix: mirrorPrefix(deps.id),
      tls:
        facts.tlsObject !== undefined
          ? { credsId: facts.tlsObject, hostname: this.destinationName }
          : undefined,
    });
    const how =
      facts.reply.disks?.type === 'tunnel'
        ? 'through the tunnel'
        : deps.settings.tls
          ? 'over QEMU TLS'
          : 'in clear text';
    this.setState(
      'migrating',
      `copying ${plan.disks.length} disk(s) to ${deps.peer.name} ${how}, then the memory`,
    );
    const { completionTimeoutSeconds } = deps.settings;
    const stallSeconds = diskStallLimit(deps.settings);
    let copy: CopyState | undefined;
    for (;;) {
      await this.tick();
      const sample = await this.look();
      if (sample.disks?.every((d) => d.ready) === true) break;
      this.throwIfAborted();
      if (completionTimeoutReached(this.elapsedSeconds(), completionTimeoutSeconds, false)) {
        throw new MigrationError(
          `the disks were not in step within the completion timeout of ${completionTimeoutSeconds} s`,
        );
      }
      // Before the disks are in step nothing but giving up helps a copy that moves nothing (a cut link).
      const progress = trackCopy(copy, facts.diskCopy.copiedBytes, this.elapsedSeconds(), stallSeconds);
      copy = progress.state;
      if (progress.stalled) {
        throw new MigrationError(
          `migration aborted: the disk copy moved nothing for ${stallSeconds} s (is ${this.destinationName} reachable?)`,
        );
      }
    }
    facts.disksInStepAt = deps.clock.now();
    const mib = (facts.diskCopy.copiedBytes / 1024 ** 2).toFixed(0);
    this.events.push(`disks in step after ${this.elapsedSeconds().toFixed(1)} s (${mib} MiB copied)`);
  }

  /** QEMU paused the guest before the switch-over: the disk copies are completed, then the memory goes on. */
  private async switchOver(): Promise<void> {
    await this.failpoint('outgoing.switchover');
    const { diskCopy } = this.facts;
    if (diskCopy !== undefined) {
      await diskCopy.complete();
      this.events.push(`disk copies completed at the switch-over, ${this.elapsedSeconds().toFixed(1)} s`);
    }
    await this.deps.qmp.execute('migrate-continue', { state: 'pre-switchover' });
  }

  /** Starts QEMU sending and follows it to the end: pre-copy by nextAction, then post-copy if it switched. */
  private async migrate(): Promise<void> {
    const { deps } = this;
    const offEvents = deps.qmp.on('MIGRATION', (e: QmpEvent) => {
      if (typeof e.data.status === 'string' && e.data.status !== 'active') this.wake?.();
    });
    try {
      this.facts.sendingSince = deps.clock.now();
      await deps.qmp.execute('migrate', { uri: this.facts.transport?.uri });
      const { transport, tls } = deps.settings;
      this.setState('migrating', `migrating over ${transport}${tls ? ' with TLS' : ''} to ${deps.peer.name}`);
      if ((await this.precopy()) === 'postcopy') await this.postcopy();
    } finally {
      offEvents();
    }
  }

  /** Looks at QEMU until it completes or switches to post-copy, doing what nextAction says after each look. */
  private async precopy(): Promise<'completed' | 'postcopy'> {
    const { qmp } = this.deps;
    for (;;) {
      await this.tick();
      const sample = await this.look();
      if (sample.status === 'active')
        await this.failpoint(sample.pass >= 2 ? 'outgoing.precopy-late' : 'outgoing.precopy-early');
      const next = nextAction(this.monitor, sample);
      this.monitor = next.state;
      const { action } = next;
      if ('event' in action && action.event !== undefined) this.events.push(action.event);
      switch (action.kind) {
        case 'completed':
        case 'postcopy':
          return action.kind;
        case 'qemu-failed':
          throw new MigrationError(
            `QEMU reports the migration failed: ${this.facts.lastInfo['error-desc'] ?? 'no reason given'}`,
          );
        case 'cancelled':
          throw new MigrationError(action.message);
        case 'cancel':
          // QEMU's cancel drains every block node (qemu_savevm_state_cleanup): a mirrored
          // write waiting on a dead link to the destination would hang its main loop.
          await this.giveUpDiskCopies();
          await qmp.execute('migrate_cancel');
          break;
        case 'start-postcopy':
          await qmp.execute('migrate-start-postcopy');
          break;
        case 'pause':
          this.facts.pausedAt = this.deps.clock.now();
          await qmp.execute('stop');
          break;
        case 'set-downtime':
          await qmp.execute('migrate-set-parameters', { 'downtime-limit': action.downtimeMs });
          break;
        case 'switch-over':
          await this.switchOver();
          break;
        case 'wait':
          break;
      }
    }
  }

  /**
   * QEMU switched to post-copy: the guest must run on the destination now, and the
   * migration is finished from here whatever happens to the stream (finishPostcopy).
   */
  private async postcopy(): Promise<void> {
    const { deps, facts } = this;
    const elapsed = this.elapsedSeconds();
    facts.switchedAt = elapsed;
    this.setState('postcopy', `switched to post-copy after ${elapsed.toFixed(1)} s`);
    this.events.push(`post-copy started at ${elapsed.toFixed(1)} s`);
    // If the destination cannot be told now, its guest starts at the hand-over instead
    // (complete() resumes it): the migration goes on either way.
    await deps.peer.resume(deps.id).then(
      () => (facts.resumedDestinationAt = deps.clock.now()),
      (err: unknown) =>
        this.events.push(
          `could not resume the guest on ${deps.peer.name} at the switch (${describeError(err)}); it starts at the hand-over`,
        ),
    );
    await this.failpoint('outgoing.postcopy');
    const transport = facts.transport;
    delete facts.transport;
    const end = await finishPostcopy({
      qmp: deps.qmp,
      peer: deps.peer,
      migrationId: deps.id,
      openTransport: deps.openTransport,
      clock: deps.clock,
      transport,
      wait: () => this.tick(),
      onLook: (info) => this.lookInPostcopy(info),
      onRecovery: (attempt, error) => this.recovered(attempt, error),
    });
    if (end.transport !== undefined) facts.transport = end.transport;
  }

  private lookInPostcopy(info: QueryMigrate): void {
    this.record(info);
    if (this.monitor.abort !== undefined && !this.monitor.cancelAnnounced) {
      this.monitor = { ...this.monitor, cancelAnnounced: true };
      this.events.push('abort refused: post-copy has started, the guest already runs on the destination');
    }
  }

  private recovered(attempt: number, error: unknown): void {
    const at = this.elapsedSeconds().toFixed(1);
    if (error === undefined) {
      this.events.push(
        `post-copy stream broken at ${at} s: resumed over a new connection (recovery ${attempt})`,
      );
      this.setState('postcopy', `post-copy resumed over a new connection (recovery ${attempt})`);
      return;
    }
    const message = `post-copy recovery ${attempt} failed: ${describeError(error)}; trying again`;
    if (attempt <= 5 || attempt % 30 === 0) this.events.push(message);
    this.setState('postcopy', message);
  }

  /** Asks QEMU how the migration (and the disk copies) go, and records the sample. */
  private async look(): Promise<MigrationSample> {
    const info = await this.deps.qmp.execute<QueryMigrate>('query-migrate');
    const disks = await this.facts.diskCopy?.progress();
    return this.record(info, disks);
  }

  /** Keeps QEMU's answer (a cancelled or failed migration reports no RAM figures: the last ones stay) and records its sample. */
  private record(info: QueryMigrate, disks?: DiskSample[]): MigrationSample {
    const { facts, deps } = this;
    facts.lastInfo = info.ram === undefined ? { ...info, ram: facts.lastInfo.ram } : info;
    const elapsedMs = this.elapsedSeconds() * 1000;
    const sample = toSample(facts.lastInfo, elapsedMs, this.monitor.downtimeLimitMs, deps.clock.epochMs());
    if (disks !== undefined) sample.disks = disks;
    facts.maxThrottle = Math.max(facts.maxThrottle, sample.cpuThrottlePct);
    this.latest = sample;
    deps.recorder.sample(sample);
    return sample;
  }

  /**
   * Asks the destination to start the guest. If the answer is lost, the guest
   * may already run there: settle it with the destination (settleHandOver) before
   * anything else, so the source is never resumed beside a running copy.
   */
  private async handOver(): Promise<void> {
    const { peer, id, clock } = this.deps;
    await this.failpoint('outgoing.handover');
    try {
      await peer.complete(id);
      return;
    } catch (err) {
      this.events.push(
        `the hand-over answer was lost (${describeError(err)}); settling it with ${peer.name}`,
      );
      const outcome = await settleHandOver({
        peer,
        migrationId: id,
        cause: err,
        sleep: (ms) => clock.sleep(ms),
        onWaiting: (message) => this.deps.recorder.state('completing', message),
      });
      if (outcome === 'running') {
        this.events.push(`${peer.name} runs the guest: the hand-over had succeeded`);
        return;
      }
      throw new MigrationError(
        `the hand-over failed (${describeError(err)}) and ${
          outcome === 'dropped'
            ? `${peer.name} dropped its copy`
            : `${peer.name} cannot be reached, but never got the request to start the guest`
        }`,
      );
    }
  }

  private async completedReport(): Promise<MigrationReport> {
    const { deps, facts } = this;
    facts.resumedDestinationAt ??= deps.clock.now();
    const guest = await deps.peer.guestHealth(deps.id).catch((err: unknown): GuestVerdict => ({
      state: 'unknown',
      reason: `could not ask the destination: ${describeError(err)}`,
    }));
    const completedAt = facts.completedAt ?? deps.clock.now();
    const qemuDowntime = facts.lastInfo.downtime;
    const handover = facts.switchedAt === undefined ? facts.resumedDestinationAt - completedAt : 0;
    const forcedPauseMs =
      facts.pausedAt !== undefined ? facts.resumedDestinationAt - facts.pausedAt : undefined;
    this.setState('completed', `the VM runs on ${deps.peer.name}; guest ${guest.state}`);
    return this.report('completed', {
      seconds: (completedAt - (facts.sendingSince ?? facts.startedAt)) / 1000,
      totalSeconds: (completedAt - facts.startedAt) / 1000,
      downtimeMs: forcedPauseMs ?? (qemuDowntime !== undefined ? qemuDowntime + handover : undefined),
      forcedPauseMs,
      guest,
      error: undefined,
    });
  }

  /** A trial sent everything: the destination drops its copy, the guest runs on here. */
  private async endTrial(): Promise<MigrationReport> {
    const { deps, facts } = this;
    facts.completedAt = deps.clock.now();
    const outcome = await deps.peer.abort(deps.id, 'a trial migration: the copy is not needed');
    if (outcome !== 'dropped')
      throw new MigrationError(`${deps.peer.name} did not drop the trial copy: it says the guest runs there`);
    const restore = await restoreSourceGuest(deps.qmp, false);
    this.setState(
      'completed',
      `trial: QEMU sent everything, ${deps.peer.name} dropped its copy; ${restore.message}`,
    );
    return this.report('completed', {
      seconds: (facts.completedAt - (facts.sendingSince ?? facts.startedAt)) / 1000,
      totalSeconds: (facts.completedAt - facts.startedAt) / 1000,
      downtimeMs: undefined,
      forcedPauseMs: undefined,
      guest: { state: 'unknown', reason: `a trial: the guest stayed on the source (${restore.message})` },
      error: undefined,
    });
  }

  /** The source never switched to a copy: cancelled, the mirrors leave it on its own images. */
  private async giveUpDiskCopies(): Promise<void> {
    for (const problem of (await this.facts.diskCopy?.cancel()) ?? [])
      this.events.push(`cancelling the disk copies: ${problem}`);
  }

  /** Puts the source back (unless post-copy started), tells the destination to drop its copy, and reports. */
  private async failedReport(err: unknown): Promise<MigrationReport> {
    const { deps, facts } = this;
    const postcopy = facts.switchedAt !== undefined;
    const cancelled = this.monitor.abort?.byOperator === true && !postcopy;
    const message = describeError(err);
    await this.giveUpDiskCopies();
    const recovery = (await restoreSourceGuest(deps.qmp, postcopy)).message;
    if (postcopy) {
      // The destination holds the guest's newest CPU and device state: it must not drop it.
      this.events.push(`post-copy had started: ${deps.peer.name} keeps its copy of the guest`);
    } else if (facts.destinationPrepared) {
      await deps.peer.abort(deps.id, message).then(
        (outcome) => {
          if (outcome === 'running') this.events.push(`${deps.peer.name} keeps the guest: it runs there`);
        },
        (e: unknown) => this.events.push(`destination cleanup failed: ${describeError(e)}`),
      );
    }
    const status = cancelled ? 'cancelled' : 'failed';
    this.setState(status, `${message}; ${recovery}`);
    return this.report(status, {
      seconds: this.elapsedSeconds(),
      totalSeconds: (deps.clock.now() - facts.startedAt) / 1000,
      downtimeMs: undefined,
      forcedPauseMs: undefined,
      guest: { state: 'unknown', reason: recovery },
      error: message,
    });
  }

  private diskReport(copy: DiskCopy): NonNullable<MigrationReport['disks']> {
    return copy.last.map((d) => ({
      disk: d.disk,
      sync: copy.plan.disks.find((p) => p.disk === d.disk)?.sync ?? 'full',
      bytes: d.transferredBytes,
    }));
  }

  /** Terminal states are recorded by the caller, together with the report. */
  private setState(state: MigrationState, message: string): void {
    this.state = state;
    if (!isTerminalMigrationState(state)) this.deps.recorder.state(state, message);
  }

  private async failpoint(name: Failpoint): Promise<void> {
    if (this.passed.has(name)) return;
    this.passed.add(name);
    await this.deps.failpoint?.(name);
  }

  /** Seconds since the migration started moving data: the disk copies, else QEMU's sending. */
  private elapsedSeconds(): number {
    const { facts } = this;
    return (this.deps.clock.now() - (facts.copyingSince ?? facts.sendingSince ?? facts.startedAt)) / 1000;
  }

  private throwIfAborted(): void {
    const { abort } = this.monitor;
    if (abort !== undefined) throw new MigrationError(`migration cancelled: ${abort.reason}`);
  }

  /** Waits `pollMs`, or less when QEMU reports a change or the operator asks for something. */
  private tick(): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        this.wake = undefined;
        resolve();
      };
      this.wake = finish;
      void this.deps.clock.sleep(this.deps.pollMs ?? 250).then(finish);
    });
  }

  private report(
    status: MigrationReport['status'],
    r: {
      seconds: number;
      totalSeconds: number;
      downtimeMs: number | undefined;
      forcedPauseMs: number | undefined;
      guest: GuestVerdict;
      error: string | undefined;
    },
  ): MigrationReport {
    const { settings, request } = this.deps;
    const { lastInfo, switchedAt, maxThrottle } = this.facts;
    const bytes = lastInfo.ram?.transferred ?? 0;
    return {
      id: this.deps.id,
      vm: request.spec.name,
      from: this.deps.sourceHost,
      to: this.destinationName,
      status,
      transport: settings.transport,
      tls: settings.tls,
      channels: settings.channels,
      postCopy: settings.postCopy,
      autoConverge: settings.autoConverge,
      reasons: settings.reasons,
      bytes,
      seconds: round(r.seconds, 3),
      totalSeconds: round(r.totalSeconds, 3),
      gbps: r.seconds > 0 ? round((bytes * 8) / r.seconds / 1e9, 3) : 0,
      downtimeMs: r.downtimeMs === undefined ? undefined : Math.round(r.downtimeMs),
      iterations: lastInfo.ram?.['dirty-sync-count'] ?? 0,
      maxCpuThrottlePct: maxThrottle,
      postcopySwitchSeconds: switchedAt === undefined ? undefined : round(switchedAt, 2),
      forcedPauseMs: r.forcedPauseMs === undefined ? undefined : Math.round(r.forcedPauseMs),
      events: [...this.events],
      forecast: this.forecastSummary,
      guest: r.guest.state,
      guestDetail: r.guest.reason,
      error: r.error,
      ...(this.facts.diskCopy !== undefined ? { disks: this.diskReport(this.facts.diskCopy) } : {}),
      ...(this.facts.disksInStepAt !== undefined && this.facts.copyingSince !== undefined
        ? { diskSeconds: round((this.facts.disksInStepAt - this.facts.copyingSince) / 1000, 3) }
        : {}),
      ...(status === 'failed' && this.facts.destinationBusy === true ? { destinationBusy: true } : {}),
    };
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
