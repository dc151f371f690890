import type { QmpClient } from '../qemu/index.js';
import type { DestinationPeer } from './source-migration.js';
import { closeTransport, type TransportFactory, type TransportSession } from './transport-session.js';

/**
 * Reconnects a post-copy migration whose stream broke (the source QEMU is in
 * postcopy-paused; the guest runs on the destination and waits there for the
 * pages only the source has): the destination listens again (migrate-recover),
 * a new transport is opened to it, and the source QEMU resumes sending
 * (`migrate` with `resume`). The broken transport (`previous`) is closed first;
 * returns the new one, or throws with nothing left open.
 */
export async function resumePostcopy(d: {
  previous: TransportSession | undefined;
  qmp: QmpClient;
  peer: Pick<DestinationPeer, 'recover'>;
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
