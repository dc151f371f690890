import { randomBytes } from 'node:crypto';
import { ConflictError, MigrationError, describeError } from '../errors.js';
import type { TunnelMode } from '../policy/index.js';
import type { TunnelRelayKind } from '../qemu/index.js';
import { NbdExports, type ExportedDisk, type NbdAddress } from '../block/index.js';
import type { QmpClient } from '../qemu/index.js';
import type { Clock } from './clock.js';
import { configureMigration, type StreamSettings } from './qemu-setup.js';
import type { IncomingReply } from './types.js';

/** What the destination lets through its tunnel for one migration. */
export interface TunnelAcceptance {
  migrationId: string;
  token: string;
  /** The source agent: the CN its certificate must have. */
  peerCommonName: string;
  /** The unix socket of the destination QEMU behind the tunnel. */
  targetPath: string;
  channels: number;
  mode: TunnelMode;
  /** This migration's relay (an override); absent: the agent's own. */
  relay?: TunnelRelayKind;
}

/** Where a stream reaches this host's QEMU: its migration address, and the agent's tunnel ends. */
export interface IncomingEndpoints {
  /** The address the destination QEMU listens on for native streams. */
  readonly migrationAddress: string;
  /** The unix socket the destination QEMU listens on behind the tunnel. */
  incomingPath(migrationId: string): string;
  /** Lets `peerCommonName` open tunnel connections with `token` to `targetPath`; the naive tunnel's or native relay's port if any. */
  acceptTunnel(t: TunnelAcceptance): Promise<{ naivePort?: number; relayPort?: number }>;
  closeTunnel(migrationId: string): Promise<void>;
  /** Block migration: the unix socket the destination QEMU's NBD server listens on behind the tunnel. */
  incomingDisksPath(migrationId: string): string;
  /** Block migration: lets the same peer with the same token open `disks` connections to `targetPath` through the tunnel. */
  acceptDiskTunnel(t: {
    migrationId: string;
    token: string;
    peerCommonName: string;
    targetPath: string;
    disks: number;
  }): Promise<void>;
  /** Block migration, native: a TCP port free on `host` for the NBD server. */
  freePort(host: string): Promise<number>;
}

/**
 * What to do with an incoming copy that was neither started nor dropped, from what
 * its source agent says of the migration: drop it when the source ended it without
 * the guest starting here, or never had it; keep it otherwise (in progress,
 * settling, or the source cannot be asked).
 */
export function orphanVerdict(sourceState: string): 'drop' | 'keep' {
  return ['failed', 'cancelled', 'unknown-there'].includes(sourceState) ? 'drop' : 'keep';
}

/**
 * What to do with an incoming migration nothing drives any more (the agent
 * restarted, or its task ended unexpectedly), from the state the journal recorded
 * and what its QEMU says now (undefined: QEMU is gone):
 * - `keep`: the guest ran here (QEMU runs it): it stays, the migration completed;
 * - `postcopy`: post-copy started: the guest's newest state is here; wait for the source to finish it;
 * - `await-source`: the hand-over was journaled but the guest never started: keep the
 *   paused copy until the source settles it (it starts it, or drops it);
 * - `drop`: the guest never ran here and cannot have: drop the copy;
 * - `gone`: QEMU is gone: nothing to keep.
 */
export function interruptedDestinationAction(
  recorded: string,
  qemu: { running: boolean; status: string } | undefined,
): 'keep' | 'postcopy' | 'await-source' | 'drop' | 'gone' {
  if (qemu === undefined) return 'gone';
  if (qemu.status.startsWith('postcopy-') || recorded === 'postcopy') return 'postcopy';
  if (qemu.running) return 'keep';
  if (recorded === 'completing') return 'await-source';
  return 'drop';
}

export interface DestinationMigrationDeps {
  id: string;
  /** Post-copy started before this object (an agent restarted in post-copy). */
  postcopyStarted?: boolean;
  /** This host's agent name (its certificate's CN): QEMU TLS and the source check it. */
  hostName: string;
  stream: StreamSettings & { tunnel: TunnelMode; relay?: TunnelRelayKind };
  /** The source agent's certificate name: only it may connect to the tunnel. */
  peerCommonName: string;
  qmp: QmpClient;
  endpoints: IncomingEndpoints;
  /** QEMU's tls-creds-x509 directory on this host (native TLS). */
  tlsCredsDir: string | undefined;
  clock: Clock;
  log: (line: string, fields?: { level?: 'warn'; migration?: string }) => void;
  /** Block migration: the nodes of the new images to export to the source, one per copied disk. */
  disks?: readonly ExportedDisk[] | undefined;
}

/**
 * The destination end of one migration, as QEMU sees it: sets the incoming
 * QEMU up and has it listen (natively, or behind the agent's tunnel), runs the
 * guest at the post-copy switch, listens again when a post-copy stream broke,
 * and starts the guest once QEMU has received everything. The agent's
 * IncomingMigrations keeps the records and decides who may call what.
 */
export class DestinationMigration {
  private readonly deps: DestinationMigrationDeps;
  /** A tunnel is registered for it (to close when it ends). */
  private tunnelOpen = false;
  /** Post-copy recoveries so far (each listens on a fresh socket). */
  private recoveries = 0;
  /** Block migration: the NBD server and its exports, until the guest starts or the migration fails. */
  private exports: NbdExports | undefined;
  /** QEMU said it entered post-copy, or the source said it switched. */
  private postcopy = false;

  constructor(deps: DestinationMigrationDeps) {
    this.deps = deps;
    this.postcopy = deps.postcopyStarted === true;
    deps.qmp.on('MIGRATION', (e) => {
      if (typeof e.data.status === 'string' && e.data.status.startsWith('postcopy-')) this.postcopy = true;
    });
  }

  /**
   * Whether the migration went into post-copy here: from then on this QEMU holds the
   * guest's newest state and the source can never resume its copy.
   */
  get postcopyStarted(): boolean {
    return this.postcopy;
  }

  /** Sets QEMU up and has it listen; the answer tells the source where to send the stream. */
  async listen(): Promise<IncomingReply> {
    const { qmp, stream, tlsCredsDir, hostName } = this.deps;
    await configureMigration(
      qmp,
      { role: 'destination', settings: stream, sourceHost: this.deps.peerCommonName },
      { objectId: 'vmf-tls-in', credsDir: tlsCredsDir, host: hostName },
    );
    const reply = await this.listenFor('migrate-incoming', stream.channels);
    if (this.deps.disks === undefined || this.deps.disks.length === 0) return reply;
    return { ...reply, disks: await this.exportDisks(this.deps.disks, reply.tunnelToken) };
  }

  /**
   * Block migration: starts the NBD server and exports each new image, writable.
   * Native: on the migration address, with QEMU's TLS (admitting only the source
   * agent's certificate) unless the stream is clear text. Tunnelled: on a unix
   * socket the tunnel reaches with the stream's token.
   */
  private async exportDisks(
    disks: readonly ExportedDisk[],
    token: string | undefined,
  ): Promise<NonNullable<IncomingReply['disks']>> {
    const { qmp, stream, endpoints, id, peerCommonName } = this.deps;
    if (stream.transport === 'native') {
      const host = endpoints.migrationAddress;
      const listen: NbdAddress = { type: 'inet', host, port: await endpoints.freePort(host) };
      const tls = stream.tls
        ? { credsId: 'vmf-tls-in', clientCommonName: peerCommonName, authzId: 'vmf-nbd-authz' }
        : undefined;
      this.exports = await NbdExports.start(qmp, { listen, disks, tls });
      return listen;
    }
    if (token === undefined) throw new MigrationError('no tunnel token for the disks');
    const path = endpoints.incomingDisksPath(id);
    this.exports = await NbdExports.start(qmp, { listen: { type: 'unix', path }, disks });
    await endpoints.acceptDiskTunnel({
      migrationId: id,
      token,
      peerCommonName,
      targetPath: path,
      disks: disks.length,
    });
    return { type: 'tunnel' };
  }

  /** Block migration: removes the exports and stops the NBD server (before the guest runs, or when giving up). */
  async stopExports(): Promise<void> {
    const exports = this.exports;
    this.exports = undefined;
    const problems = (await exports?.stop()) ?? [];
    for (const p of problems) {
      this.deps.log(`migration ${this.deps.id}: stopping the disk exports: ${p}`, {
        level: 'warn',
        migration: this.deps.id,
      });
    }
  }

  /**
   * Post-copy lost its stream (both QEMUs paused in post-copy, the guest here
   * waiting for pages): listens again so the source can resume it (QEMU's
   * migrate-recover), over a fresh socket and, tunnelled, a fresh token.
   */
  async recover(): Promise<IncomingReply> {
    const status = await this.status();
    if (status !== 'postcopy-paused') {
      throw new ConflictError(
        `migration ${this.deps.id} is ${status} here, not paused in post-copy: nothing to recover`,
      );
    }
    this.recoveries += 1;
    await this.closeTunnel();
    return this.listenFor('migrate-recover', 1);
  }

  get recoveryCount(): number {
    return this.recoveries;
  }

  /** Post-copy switched over: the guest runs here from now on. */
  async resume(): Promise<void> {
    this.postcopy = true;
    await this.deps.qmp.execute('cont');
  }

  /**
   * The source finished sending: waits (up to 10 s) for QEMU to agree, then runs
   * the guest, calling `beforeRun` first when it is not running yet (if it throws,
   * the guest is not started).
   */
  async startGuest(beforeRun?: () => void): Promise<void> {
    const { qmp, clock } = this.deps;
    const deadline = clock.now() + 10_000;
    for (;;) {
      const status = await this.status();
      if (status === 'completed') break;
      if (status === 'failed' || clock.now() > deadline) {
        throw new MigrationError(`the destination QEMU reports the incoming migration as ${status}`);
      }
      await clock.sleep(50);
    }
    if (await this.running()) return;
    await this.stopExports();
    beforeRun?.();
    await qmp.execute('cont');
  }

  /** Whether the incoming guest runs (false when its QEMU is gone or does not answer). */
  async running(): Promise<boolean> {
    const { qmp } = this.deps;
    if (!qmp.connected) return false;
    const status = await qmp.execute<{ running: boolean }>('query-status').catch(() => ({ running: false }));
    return status.running;
  }

  /** Forgets the tunnel, if one was opened (a failure to close it is only logged). */
  async closeTunnel(): Promise<void> {
    if (!this.tunnelOpen) return;
    this.tunnelOpen = false;
    await this.deps.endpoints.closeTunnel(this.deps.id).catch((err: unknown) => {
      this.deps.log(`closing the tunnel of migration ${this.deps.id}: ${describeError(err)}`, {
        level: 'warn',
        migration: this.deps.id,
      });
    });
  }

  private async listenFor(
    command: 'migrate-incoming' | 'migrate-recover',
    channels: number,
  ): Promise<IncomingReply> {
    const { qmp, stream, endpoints, id, hostName: destinationHost } = this.deps;
    if (stream.transport === 'native') {
      await qmp.execute(command, { uri: `tcp:${endpoints.migrationAddress}:0` });
      return { uri: `tcp:${endpoints.migrationAddress}:${await this.listeningPort()}`, destinationHost };
    }
    const base = endpoints.incomingPath(id);
    const targetPath = this.recoveries === 0 ? base : `${base}.r${this.recoveries}`;
    await qmp.execute(command, { uri: `unix:${targetPath}` });
    const token = randomBytes(32).toString('base64url');
    const { naivePort, relayPort } = await endpoints.acceptTunnel({
      migrationId: id,
      token,
      peerCommonName: this.deps.peerCommonName,
      targetPath,
      channels,
      mode: stream.tunnel,
      ...(stream.relay !== undefined ? { relay: stream.relay } : {}),
    });
    this.tunnelOpen = true;
    return {
      tunnelToken: token,
      destinationHost,
      ...(naivePort !== undefined ? { naivePort } : {}),
      ...(relayPort !== undefined ? { relayPort } : {}),
    };
  }

  private async status(): Promise<string> {
    return (await this.deps.qmp.execute<{ status?: string }>('query-migrate')).status ?? 'unknown';
  }

  /** The port QEMU listens on for the stream: the newest inet address (migrate-recover adds one). */
  private async listeningPort(): Promise<number> {
    const info = await this.deps.qmp.execute<{ 'socket-address'?: { type: string; port?: string }[] }>(
      'query-migrate',
    );
    const port = Number(info['socket-address']?.filter((a) => a.type === 'inet').at(-1)?.port);
    if (!Number.isInteger(port) || port <= 0)
      throw new MigrationError('the destination QEMU did not report its listening port');
    return port;
  }
}
