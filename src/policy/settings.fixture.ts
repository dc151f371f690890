import type { MigrationSettings } from './types.js';

/** A plan as the drivers get it, for tests that store or send one. */
export const EXAMPLE_SETTINGS: MigrationSettings = {
  transport: 'native',
  tls: true,
  channels: 4,
  tunnel: 'multi',
  bandwidthMiBps: 0,
  maxBandwidthBytes: Number.MAX_SAFE_INTEGER,
  downtimeSteps: [
    [0, 50],
    [300, 500],
  ],
  completionTimeoutSeconds: 800,
  timeoutAction: 'abort',
  postCopy: false,
  autoConverge: false,
  stallSeconds: 0,
  reasons: ['native with QEMU TLS: both hosts can'],
};
