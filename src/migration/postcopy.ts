import { MigrationError } from '../errors.js';
import type { QmpClient } from '../qemu/index.js';
import type { Clock } from './clock.js';
import { settleRetryDelayMs } from './handover.js';
import { POSTCOPY_STATUSES, type QueryMigrate } from './query-migrate.js';
import { closeTransport, type TransportFactory, type TransportSession } from './transport-session.js';
import type { IncomingReply } from './types.js';

export interface PostcopyRun {
  qmp: QmpClient;
  /** The destination: listens again for a broken stream (migrate-recover there). */
  peer: { recover(migrationId: string): Promise<IncomingReply> };
  migrationId: string;
  openTransport: TransportFactory;
  clock: Clock;
  /** The transport in use when post-copy started, if any (closed and replaced at each recovery). */
  transport: TransportSession | undefined;
  /** Waits until the next look at QEMU. */
  wait: () => Promise<void>;
  /** Each look at QEMU (the driver records samples from it). */
  onLook?: (info: QueryMigrate) => void;
  /** After each recovery attempt: resumed over a new connection, or `error` and tried again after a back-off. */
  onRecovery: (attempt: number, error?: unknown) => void;
}

/**
 * Drives a migration in post-copy to its end, for the driver after the switch
 * and for an agent that restarted during post-copy alike. The guest runs on the
 * destination and waits there for pages only the source QEMU has; whenever the
 * stream breaks (postcopy-paused), the destination is asked to listen again and
 * the source resumes over a new connection, with a back-off between failed
 * attempts, for as long as it takes. Returns QEMU's last answer (completed) and
 * the transport in use, for the caller to close; any other end is a
 * MigrationError, with nothing left open.
 */
export async function finishPostcopy(
  run: PostcopyRun,
): Promise<{ info: QueryMigrate; transport: TransportSession | undefined }> {
  let transport = run.transport;
  let attempts = 0;
  let nextAttemptAt = 0;
  try {
    for (;;) {
      const info = await run.qmp.execute<QueryMigrate>('query-migrate');
      run.onLook?.(info);
      const status = info.status ?? 'none';
      if (status === 'completed') return { info, transport };
      if (!POSTCOPY_STATUSES.includes(status)) {
        const why = info['error-desc'] !== undefined ? `: ${info['error-desc']}` : '';
        throw new MigrationError(`the source QEMU reports ${status} during post-copy${why}`);
      }
      if (status === 'postcopy-paused' && run.clock.now() >= nextAttemptAt) {
        attempts += 1;
        const previous = transport;
        transport = undefined;
        try {
          transport = await resumePostcopy({ ...run, previous });
          run.onRecovery(attempts);
        } catch (err) {
          nextAttemptAt = run.clock.now() + settleRetryDelayMs(attempts - 1);
          run.onRecovery(attempts, err);
        }
        continue;
      }
      await run.wait();
    }
  } catch (err) {
    await closeTransport(transport);
    throw err;
  }
}

/**
 * One reconnection of a broken post-copy stream: the broken transport
 * (`previous`) is closed, the destination listens again (migrate-recover), a new
 * transport is opened to it, and the source QEMU resumes sending (`migrate` with
 * `resume`). Returns the new transport, or throws with nothing left open.
 */
async function resumePostcopy(d: {
  previous: TransportSession | undefined;
  qmp: QmpClient;
  peer: PostcopyRun['peer'];
  migrationId: string;
  openTransport: TransportFactory;
}): Promise<TransportSession> {
  await closeTransport(d.previous);
  const again = await d.peer.recover(d.migrationId);
  const transport = await d.openTransport(again);
  try {
    await d.qmp.execute('migrate', { uri: transport.uri, resume: true });
  } catch (err) {
    await closeTransport(transport);
    throw err;
  }
  return transport;
}
