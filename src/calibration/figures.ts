import type { FigurePair, SecureTransport, TransportFigure, TransportFigures } from '../policy/index.js';
import { median } from './median.js';
import { dayOf, type CalibrationResult } from './calibration.js';

/** A finished migration from this host, as the journal keeps it: what the figures are made of. */
export interface PastMigration {
  /** The destination agent's address. */
  peer: string;
  state: string;
  transport: 'native' | 'tunnelled';
  tls: boolean;
  /** The tunnel's relay ('naive' is the benchmark's baseline, not the product). */
  tunnel: 'multi' | 'naive';
  /** A bandwidth cap (MiB/s, 0 = none): a capped migration measured the cap, not the transport. */
  bandwidthMiBps: number;
  gbps: number;
  finishedAt: number;
}

/** How many recent migrations per transport the figures are the median of. */
export const RECENT_MIGRATIONS = 5;

function secureTransportOf(m: PastMigration): SecureTransport | undefined {
  if (m.transport === 'tunnelled') return m.tunnel === 'multi' ? 'tunnelled' : undefined;
  return m.tls ? 'nativeTls' : undefined;
}

/**
 * Each secure transport's figure from past migrations to `peer`: the median
 * Gbit/s of the newest completed, uncapped ones (clear text and the naive
 * tunnel do not count).
 */
export function figuresFromMigrations(peer: string, migrations: readonly PastMigration[]): FigurePair {
  const out: Partial<Record<SecureTransport, TransportFigure>> = {};
  for (const transport of ['nativeTls', 'tunnelled'] as const) {
    const mine = migrations
      .filter(
        (m) =>
          m.peer === peer &&
          m.state === 'completed' &&
          m.bandwidthMiBps === 0 &&
          m.gbps > 0 &&
          secureTransportOf(m) === transport,
      )
      .sort((x, y) => y.finishedAt - x.finishedAt)
      .slice(0, RECENT_MIGRATIONS);
    const newest = mine[0];
    if (newest === undefined) continue;
    out[transport] = {
      gbps: round(median(mine.map((m) => m.gbps))),
      date: dayOf(newest.finishedAt),
      migrations: mine.length,
    };
  }
  return out;
}

/** A calibration's figures: each transport that completed, its median over the calibration's runs. */
export function figuresFromCalibration(result: CalibrationResult): FigurePair {
  const out: Partial<Record<SecureTransport, TransportFigure>> = {};
  for (const transport of ['nativeTls', 'tunnelled'] as const) {
    const runs = result.runs.filter(
      (r) => r.transport === transport && r.status === 'completed' && r.gbps > 0,
    );
    if (runs.length === 0) continue;
    const cpu = runs.map((r) => r.cpuSecondsPerGiB).filter((c): c is number => c !== undefined);
    out[transport] = {
      gbps: round(median(runs.map((r) => r.gbps))),
      ...(cpu.length > 0 ? { cpuSecondsPerGiB: round(median(cpu)) } : {}),
      date: result.date,
      migrations: runs.length,
    };
  }
  return out;
}

/** What the plan gets for `peer`: its newest calibration, and its recent migrations. */
export function transportFiguresFor(
  peer: string,
  calibrations: readonly CalibrationResult[],
  migrations: readonly PastMigration[],
): TransportFigures {
  const newest = calibrations
    .filter((c) => c.peer === peer)
    .sort((x, y) => y.finishedAt - x.finishedAt)
    .map(figuresFromCalibration)
    .find((f) => Object.keys(f).length > 0);
  const past = figuresFromMigrations(peer, migrations);
  return {
    ...(newest !== undefined ? { calibration: newest } : {}),
    ...(Object.keys(past).length > 0 ? { migrations: past } : {}),
  };
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
