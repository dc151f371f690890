import type { QmpClient } from '../qemu/index.js';
import type { DestinationPeer, TransportFactory, TransportSession } from './source-migration.js';

/**
 * Reconnects a post-copy migration whose stream broke (the source QEMU is in
 * postcopy-paused; the guest runs on the destination and waits there for the
 * pages only the source has): the destination listens again (migrate-recover),
 * a new transport is opened to it, and the source QEMU resumes sending
 * (`migrate` with `resume`). Returns the new transport; the caller closes the old one.
 */
export async function resumePostcopy(d: {
  qmp: QmpClient;
  peer: Pick<DestinationPeer, 'recover'>;
  migrationId: string;
  openTransport: TransportFactory;
}): Promise<TransportSession> {
  const again = await d.peer.recover(d.migrationId);
  const transport = await d.openTransport(again);
  try {
    await d.qmp.execute('migrate', { uri: transport.uri, resume: true });
  } catch (err) {
    await Promise.resolve(transport.close()).catch(() => undefined);
    throw err;
  }
  return transport;
}
