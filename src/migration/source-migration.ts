import { MigrationError, describeError } from '../errors.js';
import type { QmpClient, QmpEvent } from '../qemu/index.js';
import { completionTimeoutReached } from '../policy/index.js';
import { downtimeChange, timeoutResponse, trackProgress, type StallState } from './convergence.js';
import type { Forecast } from './forecast.js';
import { settleHandOver, settleRetryDelayMs } from './handover.js';
import { resumePostcopy } from './postcopy.js';
import { closeTransport, type TransportFactory, type TransportSession } from './transport-session.js';
import { restoreSourceGuest } from './source-recovery.js';
import type {
  GuestVerdict,
  IncomingReply,
  IncomingRequest,
  MigrationReport,
  MigrationSample,
  MigrationState,
} from './types.js';
import { isTerminalMigrationState } from './types.js';
import type { MigrationSettings } from '../policy/index.js';

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
  /** Milliseconds, monotonic. */
  now: () => number;
  /** Milliseconds since the Unix epoch, for the time of each sample (default Date.now). */
  epochNow?: () => number;
  /** QEMU's tls-creds-x509 directory on this host (native TLS). */
  tlsCredsDir?: string;
  pollMs?: number;
  /** Samples the guest and predicts convergence before the migration starts. */
  forecast?: () => Promise<Forecast>;
  /** Waits between attempts to settle a hand-over in doubt (default: a timer). */
  sleep?: (ms: number) => Promise<void>;
}

interface QueryMigrate {
  status?: string;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'cpu-throttle-percentage'?: number;
  'error-desc'?: string;
  ram?: {
    transferred?: number;
    remaining?: number;
    total?: number;
    'dirty-pages-rate'?: number;
    'page-size'?: number;
    mbps?: number;
    'dirty-sync-count'?: number;
  };
}

/**
 * Drives one outgoing live migration from the source host: asks the destination
 * to prepare, sets QEMU up, starts the migration, watches it (downtime steps,
 * completion timeout, stall detection, operator abort and force-complete), and
 * finishes it. On every failure before the guest may have started on the
 * destination, the source guest is left running and the destination is told to
 * clean up. After that point it is finished, not undone: a lost hand-over answer
 * is settled with the destination (settleHandOver) and a broken post-copy stream
 * is resumed (resumePostcopy).
 */
export class SourceMigration {
  private readonly deps: SourceMigrationDeps;
  private readonly abortController = new AbortController();
  private forceRequested = false;
  /** Set when the operator (not a timeout) asked to abort: the migration ends as cancelled, not failed. */
  private operatorAbort = false;
  private wake: (() => void) | undefined;
  private readonly events: string[] = [];
  private latest: MigrationSample | undefined;
  private state: MigrationState = 'preparing';
  private forecastSummary: string | undefined;
  /** The destination's host name once it answered (its address until then). */
  private destinationName: string;

  constructor(deps: SourceMigrationDeps) {
    this.deps = deps;
    this.destinationName = deps.peer.name;
  }

  get progress(): { state: MigrationState; sample: MigrationSample | undefined } {
    return { state: this.state, sample: this.latest };
  }

  /** Operator abort: cancel unless post-copy has already started (then it cannot be undone). */
  abort(reason = 'aborted by the operator'): void {
    if (!this.abortController.signal.aborted) {
      this.operatorAbort = true;
      this.abortController.abort(new Error(reason));
    }
    this.wake?.();
  }

  /** Operator force-complete: post-copy when enabled for this migration, else pause the guest. */
  forceComplete(): void {
    this.forceRequested = true;
    this.wake?.();
  }

  async run(): Promise<MigrationReport> {
    const { deps } = this;
    const { settings, qmp } = deps;
    const started = deps.now();
    // Timeouts, samples and throughput count from the moment QEMU starts sending, as nova's monitor does.
    let sendingSince: number | undefined;
    const elapsedSeconds = (): number => (deps.now() - (sendingSince ?? started)) / 1000;
    let transport: TransportSession | undefined;
    let destinationPrepared = false;
    let switchedToPostcopy: number | undefined;
    let pausedAt: number | undefined;
    let resumedDestinationAt: number | undefined;
    let maxThrottle = 0;
    let lastInfo: QueryMigrate = {};
    let tlsObject: string | undefined;
    const wasRunning = await this.guestRunning();

    // Terminal states are recorded by the caller, together with the report.
    const setState = (state: MigrationState, message: string): void => {
      this.state = state;
      if (!isTerminalMigrationState(state)) deps.recorder.state(state, message);
    };

    try {
      if (!wasRunning) throw new MigrationError(`VM ${deps.request.spec.name} is not running on the source`);
      if (deps.forecast !== undefined) {
        setState('preparing', 'sampling the guest dirty rate for the forecast');
        const forecast = await deps.forecast().catch((err: unknown) => {
          this.events.push(`no forecast: ${describeError(err)}`);
          return undefined;
        });
        this.forecastSummary = forecast?.summary;
        const helped =
          settings.autoConverge || settings.postCopy || settings.timeoutAction === 'force_complete';
        if (forecast !== undefined && !forecast.converges && !helped) {
          this.events.push(`warning: forecast says this migration ${forecast.summary}`);
          deps.recorder.state('preparing', `warning: ${forecast.summary}`);
        }
        this.throwIfAborted();
      }
      setState('preparing', `asking ${deps.peer.name} to prepare an incoming VM`);
      const reply = await deps.peer.prepare({
        ...deps.request,
        migrationId: deps.id,
        sourceHost: deps.sourceHost,
      });
      destinationPrepared = true;
      this.destinationName = reply.destinationHost;
      this.throwIfAborted();
      transport = await deps.openTransport(reply);

      await qmp.execute('migrate-set-capabilities', {
        capabilities: [
          { capability: 'events', state: true },
          { capability: 'multifd', state: settings.channels > 1 },
          { capability: 'postcopy-ram', state: settings.postCopy },
          { capability: 'auto-converge', state: settings.autoConverge },
        ],
      });
      if (settings.transport === 'native' && settings.tls) {
        if (deps.tlsCredsDir === undefined)
          throw new MigrationError('native TLS planned but this agent has no QEMU TLS credentials');
        tlsObject = `vmf-tls-${deps.id.slice(0, 8)}`;
        await qmp.execute('object-add', {
          'qom-type': 'tls-creds-x509',
          id: tlsObject,
          dir: deps.tlsCredsDir,
          endpoint: 'client',
          'verify-peer': true,
        });
      }
      const firstDowntime = downtimeChange(settings.downtimeSteps, 0, undefined);
      let appliedDowntime = firstDowntime;
      await qmp.execute('migrate-set-parameters', {
        'max-bandwidth': settings.maxBandwidthBytes,
        // The cap holds after a post-copy switch too (0: QEMU's default, unlimited).
        'max-postcopy-bandwidth': settings.bandwidthMiBps * 1024 * 1024,
        ...(settings.channels > 1 ? { 'multifd-channels': settings.channels } : {}),
        ...(firstDowntime !== undefined ? { 'downtime-limit': firstDowntime } : {}),
        'tls-creds': tlsObject ?? '',
        'tls-hostname': tlsObject !== undefined ? reply.destinationHost : '',
      });

      const offEvents = qmp.on('MIGRATION', (e: QmpEvent) => {
        if (typeof e.data.status === 'string' && e.data.status !== 'active') this.wake?.();
      });
      try {
        sendingSince = deps.now();
        await qmp.execute('migrate', { uri: transport.uri });
        setState(
          'migrating',
          `migrating over ${settings.transport}${settings.tls ? ' with TLS' : ''} to ${deps.peer.name}`,
        );
        let stall: StallState | undefined;
        let timeoutHandled = false;
        let recoveries = 0;
        let nextRecoveryAt = 0;
        for (;;) {
          await this.tick();
          const info = await qmp.execute<QueryMigrate>('query-migrate');
          // A cancelled or failed migration reports no RAM figures: keep the last ones for the report.
          lastInfo = info.ram === undefined ? { ...info, ram: lastInfo.ram } : info;
          const status = lastInfo.status ?? 'none';
          const elapsed = elapsedSeconds();
          const sample = toSample(lastInfo, elapsed * 1000, appliedDowntime, (deps.epochNow ?? Date.now)());
          maxThrottle = Math.max(maxThrottle, sample.cpuThrottlePct);
          this.latest = sample;
          deps.recorder.sample(sample);

          if (status === 'completed') break;
          if (status === 'failed' || status === 'cancelled') {
            throw new MigrationError(
              status === 'cancelled'
                ? `migration ${this.operatorAbort ? 'cancelled' : 'aborted'}: ${describeError(this.abortController.signal.reason)}`
                : `QEMU reports the migration failed: ${lastInfo['error-desc'] ?? 'no reason given'}`,
            );
          }
          if (status === 'postcopy-active' && switchedToPostcopy === undefined) {
            switchedToPostcopy = elapsed;
            setState('postcopy', `switched to post-copy after ${elapsed.toFixed(1)} s`);
            this.events.push(`post-copy started at ${elapsed.toFixed(1)} s`);
            // If the destination cannot be told now, its guest starts at the hand-over instead
            // (complete() resumes it): the migration goes on either way.
            await deps.peer.resume(deps.id).then(
              () => (resumedDestinationAt = deps.now()),
              (err: unknown) =>
                this.events.push(
                  `could not resume the guest on ${deps.peer.name} at the switch (${describeError(err)}); it starts at the hand-over`,
                ),
            );
          }
          if (status === 'postcopy-paused' && deps.now() >= nextRecoveryAt) {
            // The stream broke after the switch: the guest runs on the destination and
            // waits there for pages only this QEMU has. Nothing but resuming can save it.
            recoveries += 1;
            try {
              const previous = transport;
              transport = undefined;
              transport = await resumePostcopy({
                previous,
                qmp,
                peer: deps.peer,
                migrationId: deps.id,
                openTransport: deps.openTransport,
              });
              this.events.push(
                `post-copy stream broken at ${elapsed.toFixed(1)} s: resumed over a new connection (recovery ${recoveries})`,
              );
              setState('postcopy', `post-copy resumed over a new connection (recovery ${recoveries})`);
            } catch (err) {
              nextRecoveryAt = deps.now() + settleRetryDelayMs(recoveries - 1);
              const message = `post-copy recovery ${recoveries} failed: ${describeError(err)}; trying again`;
              if (recoveries <= 5 || recoveries % 30 === 0) this.events.push(message);
              setState('postcopy', message);
            }
            continue;
          }
          if (this.abortController.signal.aborted) {
            if (switchedToPostcopy !== undefined) {
              this.events.push(
                'abort refused: post-copy has started, the guest already runs on the destination',
              );
            } else if (status !== 'cancelling') {
              this.events.push(`abort requested at ${elapsed.toFixed(1)} s`);
              await qmp.execute('migrate_cancel');
            }
            continue;
          }
          const { state: nextStall, stalled } = trackProgress(
            stall,
            sample.remainingBytes,
            elapsed,
            settings.stallSeconds,
          );
          stall = nextStall;
          const timedOut = completionTimeoutReached(
            elapsed,
            settings.completionTimeoutSeconds,
            switchedToPostcopy !== undefined,
          );
          if (!timeoutHandled && switchedToPostcopy === undefined && pausedAt === undefined) {
            let trigger: string | undefined;
            if (this.forceRequested) trigger = 'force-complete requested by the operator';
            else if (timedOut)
              trigger = `completion timeout of ${settings.completionTimeoutSeconds} s reached`;
            else if (stalled) trigger = `no progress for ${settings.stallSeconds} s`;
            if (trigger !== undefined) {
              timeoutHandled = true;
              const response = this.forceRequested
                ? timeoutResponse('force_complete', settings.postCopy)
                : timeoutResponse(settings.timeoutAction, settings.postCopy);
              this.events.push(`${trigger} at ${elapsed.toFixed(1)} s: ${response}`);
              if (response === 'abort') {
                this.abortController.abort(new Error(trigger));
                await qmp.execute('migrate_cancel');
              } else if (response === 'postcopy') {
                await qmp.execute('migrate-start-postcopy');
              } else {
                pausedAt = deps.now();
                await qmp.execute('stop');
              }
              continue;
            }
          }
          const change = downtimeChange(settings.downtimeSteps, elapsed, appliedDowntime);
          if (change !== undefined && switchedToPostcopy === undefined) {
            await qmp.execute('migrate-set-parameters', { 'downtime-limit': change });
            appliedDowntime = change;
          }
        }
      } finally {
        offEvents();
      }

      setState('completing', `QEMU finished sending; starting the guest on ${deps.peer.name}`);
      const completedAt = deps.now();
      await this.handOver();
      resumedDestinationAt ??= deps.now();
      const guest = await deps.peer.guestHealth(deps.id).catch((err: unknown): GuestVerdict => ({
        state: 'unknown',
        reason: `could not ask the destination: ${describeError(err)}`,
      }));
      const seconds = (completedAt - (sendingSince ?? started)) / 1000;
      const bytes = lastInfo.ram?.transferred ?? 0;
      const qemuDowntime = lastInfo.downtime;
      const handover = switchedToPostcopy === undefined ? resumedDestinationAt - completedAt : 0;
      const downtimeMs =
        pausedAt !== undefined
          ? resumedDestinationAt - pausedAt
          : qemuDowntime !== undefined
            ? qemuDowntime + handover
            : undefined;
      setState('completed', `the VM runs on ${deps.peer.name}; guest ${guest.state}`);
      return this.report('completed', {
        bytes,
        seconds,
        totalSeconds: (completedAt - started) / 1000,
        downtimeMs,
        iterations: lastInfo.ram?.['dirty-sync-count'] ?? 0,
        maxThrottle,
        switchedToPostcopy,
        forcedPauseMs: pausedAt !== undefined ? resumedDestinationAt - pausedAt : undefined,
        guest,
        error: undefined,
      });
    } catch (err) {
      const cancelled = this.operatorAbort && switchedToPostcopy === undefined;
      const message = describeError(err);
      const recovery = (await restoreSourceGuest(deps.qmp, switchedToPostcopy !== undefined)).message;
      if (switchedToPostcopy !== undefined) {
        // The destination holds the guest's newest CPU and device state: it must not drop it.
        this.events.push(`post-copy had started: ${deps.peer.name} keeps its copy of the guest`);
      } else if (destinationPrepared) {
        await deps.peer.abort(deps.id, message).then(
          (outcome) => {
            if (outcome === 'running') this.events.push(`${deps.peer.name} keeps the guest: it runs there`);
          },
          (e: unknown) => this.events.push(`destination cleanup failed: ${describeError(e)}`),
        );
      }
      const status = cancelled ? 'cancelled' : 'failed';
      setState(status, `${message}; ${recovery}`);
      return this.report(status, {
        bytes: lastInfo.ram?.transferred ?? 0,
        seconds: elapsedSeconds(),
        totalSeconds: (deps.now() - started) / 1000,
        downtimeMs: undefined,
        iterations: lastInfo.ram?.['dirty-sync-count'] ?? 0,
        maxThrottle,
        switchedToPostcopy,
        forcedPauseMs: undefined,
        guest: { state: 'unknown', reason: recovery },
        error: message,
      });
    } finally {
      await closeTransport(transport);
      if (tlsObject !== undefined) await qmp.execute('object-del', { id: tlsObject }).catch(() => undefined);
    }
  }

  /**
   * Asks the destination to start the guest. If the answer is lost, the guest
   * may already run there: settle it with the destination (settleHandOver) before
   * anything else, so the source is never resumed beside a running copy.
   */
  private async handOver(): Promise<void> {
    const { peer, id } = this.deps;
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
        sleep: this.deps.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
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

  private throwIfAborted(): void {
    if (this.abortController.signal.aborted) {
      throw new MigrationError(`migration cancelled: ${describeError(this.abortController.signal.reason)}`);
    }
  }

  private async guestRunning(): Promise<boolean> {
    const status = await this.deps.qmp.execute<{ status: string; running: boolean }>('query-status');
    return status.running;
  }

  private tick(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.deps.pollMs ?? 250);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  private report(
    status: MigrationReport['status'],
    r: {
      bytes: number;
      seconds: number;
      totalSeconds: number;
      downtimeMs: number | undefined;
      iterations: number;
      maxThrottle: number;
      switchedToPostcopy: number | undefined;
      forcedPauseMs: number | undefined;
      guest: GuestVerdict;
      error: string | undefined;
    },
  ): MigrationReport {
    const { settings, request } = this.deps;
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
      bytes: r.bytes,
      seconds: round(r.seconds, 3),
      totalSeconds: round(r.totalSeconds, 3),
      gbps: r.seconds > 0 ? round((r.bytes * 8) / r.seconds / 1e9, 3) : 0,
      downtimeMs: r.downtimeMs === undefined ? undefined : Math.round(r.downtimeMs),
      iterations: r.iterations,
      maxCpuThrottlePct: r.maxThrottle,
      postcopySwitchSeconds: r.switchedToPostcopy === undefined ? undefined : round(r.switchedToPostcopy, 2),
      forcedPauseMs: r.forcedPauseMs === undefined ? undefined : Math.round(r.forcedPauseMs),
      events: [...this.events],
      forecast: this.forecastSummary,
      guest: r.guest.state,
      guestDetail: r.guest.reason,
      error: r.error,
    };
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function toSample(
  info: QueryMigrate,
  elapsedMs: number,
  downtimeLimitMs: number | undefined,
  time: number,
): MigrationSample {
  const ram = info.ram ?? {};
  return {
    time,
    elapsedMs,
    status: info.status ?? 'none',
    transferredBytes: ram.transferred ?? 0,
    remainingBytes: ram.remaining ?? 0,
    totalBytes: ram.total ?? 0,
    dirtyRateBps: (ram['dirty-pages-rate'] ?? 0) * (ram['page-size'] ?? 4096),
    throughputMbps: ram.mbps ?? 0,
    pass: ram['dirty-sync-count'] ?? 0,
    expectedDowntimeMs: info['expected-downtime'] ?? 0,
    cpuThrottlePct: info['cpu-throttle-percentage'] ?? 0,
    downtimeLimitMs,
  };
}
