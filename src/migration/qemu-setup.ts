import { MigrationError } from '../errors.js';
import { qemuAuthzListObject, qemuPeerNames, qemuTlsCredsObject } from '../pki/index.js';
import type { MigrationSettings } from '../policy/index.js';
import type { QmpClient } from '../qemu/index.js';

/** What both ends set in QEMU: the same capabilities on both sides, TLS for native TLS. */
export type StreamSettings = Pick<MigrationSettings, 'transport' | 'tls' | 'channels' | 'postCopy'>;

export type QemuSetup =
  | {
      role: 'source';
      settings: StreamSettings &
        Pick<MigrationSettings, 'autoConverge' | 'bandwidthMiBps' | 'maxBandwidthBytes'>;
      /** The first downtime step, when the schedule has one. */
      downtimeLimitMs: number | undefined;
      /** The destination's certificate name: QEMU checks the peer against it. */
      destinationHost: string;
      /** Block migration: QEMU stops before the switch-over, for the disk copies to be completed there. */
      pauseBeforeSwitchover?: boolean;
    }
  | {
      role: 'destination';
      settings: StreamSettings;
      /** The source agent's certificate name: with native TLS, QEMU takes the stream from it alone (tls-authz). */
      sourceHost: string;
    };

/**
 * Sets one end's QEMU up for a migration: capabilities (events, multifd,
 * post-copy, and on the source auto-converge), QEMU's own TLS object when the
 * stream is native and encrypted (from `tlsCredsDir`, checking the peer), and
 * the migration parameters. Returns the TLS object's id (to delete when done).
 */
export async function configureMigration(
  qmp: QmpClient,
  setup: QemuSetup,
  tls: { objectId: string; credsDir: string | undefined; host: string },
): Promise<string | undefined> {
  const { settings } = setup;
  await qmp.execute('migrate-set-capabilities', {
    capabilities: [
      { capability: 'events', state: true },
      { capability: 'multifd', state: settings.channels > 1 },
      { capability: 'postcopy-ram', state: settings.postCopy },
      ...(setup.role === 'source'
        ? [
            { capability: 'auto-converge', state: setup.settings.autoConverge },
            { capability: 'pause-before-switchover', state: setup.pauseBeforeSwitchover === true },
          ]
        : []),
    ],
  });
  let tlsObject: string | undefined;
  if (settings.transport === 'native' && settings.tls) {
    if (tls.credsDir === undefined) {
      throw new MigrationError(`host ${tls.host} has no QEMU TLS credentials`, {
        hint: 'give the agent --qemu-tls-dir or let it lay out one from its certificate',
      });
    }
    const endpoint = setup.role === 'source' ? 'client' : 'server';
    await qmp.execute('object-add', qemuTlsCredsObject(tls.objectId, tls.credsDir, endpoint));
    tlsObject = tls.objectId;
  }
  const multifd = settings.channels > 1 ? { 'multifd-channels': settings.channels } : {};
  if (setup.role === 'destination') {
    // verify-peer alone lets any certificate of the CA feed the stream: only the source host's may.
    let authz = '';
    if (tlsObject !== undefined) {
      authz = `${tlsObject}-authz`;
      await qmp.execute('object-add', qemuAuthzListObject(authz, qemuPeerNames(setup.sourceHost, 'host')));
    }
    await qmp.execute('migrate-set-parameters', {
      'tls-creds': tlsObject ?? '',
      'tls-authz': authz,
      ...multifd,
    });
    return tlsObject;
  }
  const { downtimeLimitMs } = setup;
  await qmp.execute('migrate-set-parameters', {
    'max-bandwidth': setup.settings.maxBandwidthBytes,
    // The cap holds after a post-copy switch too (0: QEMU's default, unlimited).
    'max-postcopy-bandwidth': setup.settings.bandwidthMiBps * 1024 * 1024,
    ...multifd,
    ...(downtimeLimitMs !== undefined ? { 'downtime-limit': downtimeLimitMs } : {}),
    'tls-creds': tlsObject ?? '',
    'tls-hostname': tlsObject !== undefined ? setup.destinationHost : '',
  });
  return tlsObject;
}
