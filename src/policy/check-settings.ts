import { UsageError } from '../errors.js';
import { checkChannels } from './plan-input.js';
import type { MigrationSettings } from './types.js';

const isWhole = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isBool = (v: unknown): boolean => typeof v === 'boolean';

/** Each field of MigrationSettings: how to check it, and what it must be. */
const FIELDS: { [K in keyof MigrationSettings]: [check: (v: unknown) => boolean, expect: string] } = {
  transport: [(v) => v === 'native' || v === 'tunnelled', 'native or tunnelled'],
  tls: [isBool, 'true or false'],
  channels: [(v) => checkChannels(v, 'settings.channels') === v, 'a channel count'],
  tunnel: [(v) => v === 'multi' || v === 'naive', 'multi or naive'],
  relay: [(v) => v === undefined || v === 'native' || v === 'node', 'native or node'],
  bandwidthMiBps: [isWhole, 'a whole number >= 0'],
  maxBandwidthBytes: [isWhole, 'a whole number >= 0'],
  downtimeSteps: [
    (v) =>
      Array.isArray(v) && v.every((s) => Array.isArray(s) && s.length === 2 && s.every((n) => isWhole(n))),
    'a list of [delaySeconds, downtimeMs] pairs',
  ],
  completionTimeoutSeconds: [isWhole, 'a whole number >= 0'],
  timeoutAction: [(v) => v === 'abort' || v === 'force_complete', 'abort or force_complete'],
  postCopy: [isBool, 'true or false'],
  autoConverge: [isBool, 'true or false'],
  stallSeconds: [isWhole, 'a whole number >= 0'],
  reasons: [(v) => Array.isArray(v) && v.every((r) => typeof r === 'string'), 'a list of strings'],
  disks: [(v) => v === undefined || (Array.isArray(v) && v.every(isDiskPlan)), 'a list of disk plans'],
  keepSourceDisks: [(v) => v === undefined || isBool(v), 'true or false'],
  diskStallSeconds: [(v) => v === undefined || isWhole(v), 'a whole number >= 0'],
};

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isText = (v: unknown): boolean => typeof v === 'string' && !/[\n\0]/.test(v);

function isFingerprint(v: unknown): boolean {
  return (
    isRecord(v) &&
    (v.format === 'raw' || v.format === 'qcow2') &&
    isWhole(v.virtualSize) &&
    isWhole(v.sizeBytes) &&
    typeof v.fingerprint === 'string' &&
    /^[0-9a-f]{64}$/.test(v.fingerprint)
  );
}

/** One disk's plan from a peer; a backing image name is one a qcow2 header can hold (no commas for QEMU's options). */
function isDiskPlan(v: unknown): boolean {
  if (!isRecord(v) || !isWhole(v.disk) || !isText(v.reason)) return false;
  if (v.format !== 'raw' && v.format !== 'qcow2') return false;
  if (!isWhole(v.virtualSize) || (v.virtualSize as number) <= 0) return false;
  if (v.copyBytes !== undefined && !isWhole(v.copyBytes)) return false;
  if (v.action === 'shared') return v.sync === undefined && v.backing === undefined;
  if (v.action !== 'copy') return false;
  if (v.sync === 'full') return v.backing === undefined;
  const b = v.backing;
  return (
    v.sync === 'top' &&
    v.format === 'qcow2' &&
    isRecord(b) &&
    isText(b.name) &&
    !(b.name as string).includes(',') &&
    (b.format === 'raw' || b.format === 'qcow2') &&
    isFingerprint(b.identity)
  );
}

/** Migration settings as a peer sent them (the prepare request): every field checked, a bad one named. */
export function checkMigrationSettings(value: unknown): MigrationSettings {
  if (typeof value !== 'object' || value === null) throw new UsageError('settings must be a JSON object');
  const given = value as Record<string, unknown>;
  for (const [field, [check, expect]] of Object.entries(FIELDS)) {
    if (!check(given[field]))
      throw new UsageError(`settings.${field} must be ${expect}, got ${JSON.stringify(given[field])}`);
  }
  return Object.fromEntries(
    Object.keys(FIELDS)
      .filter((f) => given[f] !== undefined)
      .map((f) => [f, given[f]]),
  ) as unknown as MigrationSettings;
}
