import { describeError } from '../errors.js';
import type { MigrationOverrides, SecureTransport } from '../policy/index.js';

/** YYYY-MM-DD (UTC) of a time: the day reasons cite. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** One trial migration of a calibration. */
export interface CalibrationRun {
  transport: SecureTransport;
  migrationId: string | undefined;
  status: string;
  gbps: number;
  seconds: number;
  bytes: number;
  /** CPU seconds per GiB sent of this host's processes for the migration: QEMU, the agent, its relay workers. */
  cpuSecondsPerGiB: number | undefined;
  error?: string;
}

/** What `vmferry host calibrate --peer URL` measured, as the journal keeps it. */
export interface CalibrationResult {
  id: string;
  /** The peer agent's address, as given. */
  peer: string;
  memoryMiB: number;
  startedAt: number;
  finishedAt: number;
  /** Day of the calibration, YYYY-MM-DD: reasons cite it. */
  date: string;
  runs: CalibrationRun[];
}

/** What a trial migration reports back (a MigrationReport has these and more). */
export interface TrialReport {
  id: string;
  status: string;
  gbps: number;
  seconds: number;
  bytes: number;
  error: string | undefined;
}

/** The agent's side effects a calibration uses; the agent passes them in. */
export interface CalibrationDeps {
  /** Starts an idle guest with memory full of non-zero data and no disk or NIC; resolves once it runs. */
  startVm(name: string, memoryMiB: number): Promise<void>;
  stopVm(name: string): Promise<void>;
  /** Migrates the VM to `to` as a trial: QEMU sends everything, the destination drops its copy, the VM stays here. */
  trialMigration(vm: string, to: string, overrides: MigrationOverrides): Promise<TrialReport>;
  /** CPU seconds used so far by this host's processes a migration of `vm` uses. */
  cpuSeconds(vm: string): Promise<number>;
  now(): number;
  newId(): string;
}

/** Each secure transport as a calibration asks for it: unlimited bandwidth, no post-copy. */
export const CALIBRATION_OVERRIDES: Record<SecureTransport, MigrationOverrides> = {
  nativeTls: { transport: 'native', tls: true, postCopy: false, bandwidthMiBps: 0 },
  tunnelled: { transport: 'tunnelled', postCopy: false, bandwidthMiBps: 0 },
};

/** The throwaway VM of a calibration: its name says what it is. */
export const CALIBRATION_VM_PREFIX = 'vmferry-calibration-';

/**
 * Measures each secure transport to `peer`: `runs` trial migrations of one
 * idle guest per transport, alternating, with this host's CPU seconds per GiB.
 * A transport that fails is recorded with its error, not thrown.
 */
export async function calibrate(
  peer: string,
  o: { memoryMiB: number; runs: number },
  deps: CalibrationDeps,
): Promise<CalibrationResult> {
  const startedAt = deps.now();
  const id = deps.newId();
  const vm = `${CALIBRATION_VM_PREFIX}${id.slice(0, 8)}`;
  const runs: CalibrationRun[] = [];
  await deps.startVm(vm, o.memoryMiB);
  try {
    for (let i = 0; i < o.runs; i++) {
      for (const transport of ['nativeTls', 'tunnelled'] as const) {
        runs.push(await measure(vm, peer, transport, deps));
      }
    }
  } finally {
    await deps.stopVm(vm).catch(() => undefined);
  }
  const finishedAt = deps.now();
  return { id, peer, memoryMiB: o.memoryMiB, startedAt, finishedAt, date: dayOf(finishedAt), runs };
}

async function measure(
  vm: string,
  peer: string,
  transport: SecureTransport,
  deps: CalibrationDeps,
): Promise<CalibrationRun> {
  try {
    const cpu0 = await deps.cpuSeconds(vm);
    const report = await deps.trialMigration(vm, peer, CALIBRATION_OVERRIDES[transport]);
    const cpu = (await deps.cpuSeconds(vm)) - cpu0;
    const gib = report.bytes / 1024 ** 3;
    return {
      transport,
      migrationId: report.id,
      status: report.status,
      gbps: report.gbps,
      seconds: report.seconds,
      bytes: report.bytes,
      cpuSecondsPerGiB: gib > 0 ? Math.round((cpu / gib) * 100) / 100 : undefined,
      ...(report.error !== undefined ? { error: report.error } : {}),
    };
  } catch (err) {
    return {
      transport,
      migrationId: undefined,
      status: 'failed',
      gbps: 0,
      seconds: 0,
      bytes: 0,
      cpuSecondsPerGiB: undefined,
      error: describeError(err),
    };
  }
}
