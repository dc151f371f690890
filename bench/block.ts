/**
 * The block-migration rows of `npm run bench`: a VM whose local disk is full of
 * non-zero data (so every byte is really copied) moves back and forth with
 * `--block`, over each transport; the rate is the disk copy's, from the start of
 * the mirrors until every disk is in step (the memory moves after, and is not counted).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AgentApi } from '../src/agent/index.js';
import { createImage } from '../src/block/index.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../src/guest/index.js';
import type { HostKey, TwoHostLab } from '../src/lab/index.js';
import { isTerminalMigrationState, type MigrationReport } from '../src/migration/index.js';
import type { MigrationOverrides } from '../src/policy/index.js';
import { median } from './report.js';

const VM = 'bench-disk';
const DISK = `${VM}/disk.raw`;

/** One block migration's disk copy. */
export interface BlockRun {
  transport: string;
  from: string;
  to: string;
  diskBytes: number;
  diskSeconds: number;
  diskGiBps: number;
}

export interface BlockResult {
  transport: string;
  /** Median GiB/s of the disk copy over the runs. */
  diskGiBps: number;
  minGiBps: number;
  maxGiBps: number;
  runs: BlockRun[];
}

/** Boots the disk benchmark's VM on A: an idle guest on a raw local disk of `diskMiB` MiB, every byte written. */
export async function startDiskVm(lab: TwoHostLab, a: AgentApi, diskMiB: number): Promise<void> {
  const image = join(lab.agents.a.stateDir, 'instances', DISK);
  mkdirSync(dirname(image), { recursive: true });
  await createImage({ path: image, format: 'raw', virtualSize: diskMiB * 1024 * 1024 });
  execFileSync('qemu-io', ['-f', 'raw', '-c', `write -P 0x5a 0 ${diskMiB}M`, image], { stdio: 'ignore' });
  // Agents running as root start QEMU as its own user: the image must be its to read and write.
  lab.giveToQemu(image);
  await a.startVm(
    {
      name: VM,
      memoryMiB: guestRamMiB(64),
      vcpus: 1,
      boot: {
        kernel: guestKernelPath(),
        append: guestAppend({ memMiB: 64, dirtyMiBps: 0, verifyMiBps: 16 }),
      },
      disks: [{ path: DISK, format: 'raw', storage: 'local' }],
      nics: [],
    },
    { timeoutMs: 120_000 },
  );
  await a.vmHealth(VM, { minOk: 2, waitMs: 60_000 });
}

/** One block migration of the disk VM `from` -> `to` over `overrides`' transport. */
export async function blockMigrateOnce(
  lab: TwoHostLab,
  agents: Record<HostKey, AgentApi>,
  route: { from: HostKey; to: HostKey },
  transport: string,
  overrides: MigrationOverrides,
): Promise<BlockRun> {
  const { id } = await agents[route.from].startMigration({
    vm: VM,
    to: lab.agents[route.to].address,
    options: { ...overrides, block: 'all' },
  });
  let report: MigrationReport | undefined;
  while (report === undefined) {
    const m = await agents[route.from].migration(id);
    if (isTerminalMigrationState(m.state) && m.report !== null) report = m.report as MigrationReport;
    else await new Promise((r) => setTimeout(r, 250));
  }
  if (report.status !== 'completed' || report.diskSeconds === undefined)
    throw new Error(
      `block ${transport} migration ${route.from}->${route.to} ${report.status}: ${report.error ?? ''}`,
    );
  const diskBytes = (report.disks ?? []).reduce((sum, d) => sum + d.bytes, 0);
  return {
    transport,
    from: lab.agents[route.from].name,
    to: lab.agents[route.to].name,
    diskBytes,
    diskSeconds: report.diskSeconds,
    diskGiBps: report.diskSeconds > 0 ? diskBytes / 1024 ** 3 / report.diskSeconds : 0,
  };
}

const round = (n: number): number => Math.round(n * 1000) / 1000;

export function summarizeBlock(transport: string, runs: readonly BlockRun[]): BlockResult {
  const rates = runs.map((r) => r.diskGiBps);
  return {
    transport,
    diskGiBps: round(median(rates)),
    minGiBps: round(Math.min(...rates)),
    maxGiBps: round(Math.max(...rates)),
    runs: [...runs],
  };
}

/** The block-migration rows, as a markdown table. */
export function blockTable(results: readonly BlockResult[], diskMiB: number): string[] {
  return [
    `block migration: a ${diskMiB} MiB local disk full of data, copied before the memory (disk copy only)`,
    '',
    '| transport    | disk GiB/s (median) | range       |',
    '| ------------ | ------------------- | ----------- |',
    ...results.map(
      (r) =>
        `| ${r.transport.padEnd(12)} | ${r.diskGiBps.toFixed(2).padEnd(19)} | ${`${r.minGiBps.toFixed(2)}-${r.maxGiBps.toFixed(2)}`.padEnd(11)} |`,
    ),
  ];
}
