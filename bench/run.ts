/**
 * The two-host benchmark: `npm run bench -- [--json] [--pin] [--readme] [--link-gbps N] [--memory-mib N]
 * [--runs N] [--transports a,b,...] [--disk-mib N] [--block-transports a,b,...]`. Two agents in network namespaces joined by a veth link, a guest
 * whose memory is filled with non-zero data, and each transport migrated several times in one
 * run, alternating transports and directions. Needs root.
 *
 * --pin: each host gets one core of its own (host A cpu 0, host B cpu 1; every process of its
 * namespace, all threads: the agent, its relay workers, its QEMUs), the cipher's own cost is
 * measured on cpu 0 (cipherCpuPerGiB), and each transport is projected to bigger hosts.
 * --readme (with --pin): writes the tables into README.md's `bench:pinned` block.
 * Then the block-migration rows (bench/block.ts): a VM on a local disk of --disk-mib MiB moved with
 * --block over each of --block-transports (--disk-mib 0 leaves them out).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AgentApi } from '../src/agent/index.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../src/guest/index.js';
import { TwoHostLab, canUseNetns, type HostKey } from '../src/lab/index.js';
import { isTerminalMigrationState, type MigrationReport } from '../src/migration/index.js';
import type { MigrationOverrides } from '../src/policy/index.js';
import { packageRoot } from '../src/paths.js';
import { findOption } from '../src/config/index.js';
import { DEFAULT_CIPHER_SUITES } from '../src/transport/index.js';
import { blockMigrateOnce, blockTable, startDiskVm, summarizeBlock, type BlockRun } from './block.js';
import { cipherCpuPerGiB } from './cipher-floor.js';
import { PROJECTED_HOSTS, pinnedFigures, replaceReadmeBlock } from './pinned.js';
import { CLK_TCK, cpuTicks, kindOf, netnsPids, pinNamespace } from './proc-cpu.js';
import {
  pinnedTable,
  resultSvg,
  resultTable,
  summarize,
  type BenchRun,
  type CpuByKind,
  type ProcessKind,
} from './report.js';

/** --pin: the core of each host. */
const PIN = [
  ['a', '0'],
  ['b', '1'],
] as const satisfies readonly (readonly [HostKey, string])[];

/**
 * How each benchmarked transport is asked for. `tunnelled` runs the agents' default relay
 * ([vmferry] tunnel_relay); `tunnelled-native` and `tunnelled-node` name one for both ends.
 */
const TRANSPORTS: Record<string, MigrationOverrides> = {
  native: { transport: 'native', tls: false },
  'native-tls': { transport: 'native', tls: true },
  tunnelled: { transport: 'tunnelled' },
  'tunnelled-native': { transport: 'tunnelled', relay: 'native' },
  'tunnelled-node': { transport: 'tunnelled', relay: 'node' },
  'naive-tunnel': { transport: 'tunnelled', tunnel: 'naive', channels: 1 },
};

/** By default: the tunnel with the default relay, and with the other one, so both relays' costs are in one run. */
const DEFAULT_TRANSPORTS = [
  'native',
  'native-tls',
  'tunnelled',
  findOption('vmferry.tunnel_relay')?.default === 'node' ? 'tunnelled-native' : 'tunnelled-node',
  'naive-tunnel',
];

/** CPU time of every process in a network namespace, by kind, sampled often so processes that exit are still counted. */
class NamespaceCpu {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, number>();
  private readonly kinds = new Map<number, ProcessKind>();
  private pids: number[] = [];
  private pidsAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly netns: string) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  /** CPU seconds since start(), in all and per kind of process. */
  stop(): { total: number; byKind: CpuByKind } {
    clearInterval(this.timer);
    this.sample();
    const byKind: CpuByKind = {};
    let total = 0;
    for (const [pid, last] of this.last) {
      const seconds = (last - (this.first.get(pid) ?? 0)) / CLK_TCK;
      const kind = this.kinds.get(pid) ?? 'other';
      byKind[kind] = (byKind[kind] ?? 0) + seconds;
      total += seconds;
    }
    return { total, byKind };
  }

  private sample(): void {
    // Listing the namespace's processes walks /proc: once a second is enough to see
    // processes start; their CPU is read every 100 ms so one that exits loses little.
    if (Date.now() - this.pidsAt >= 1000) {
      try {
        this.pids = netnsPids(this.netns);
        this.pidsAt = Date.now();
      } catch {
        return;
      }
    }
    for (const pid of this.pids) {
      try {
        const ticks = cpuTicks(pid);
        if (!this.first.has(pid)) {
          this.first.set(pid, ticks);
          this.kinds.set(pid, kindOf(pid));
        }
        this.last.set(pid, ticks);
      } catch {
        // exited between listing and reading
      }
    }
  }
}

async function migrateOnce(
  lab: TwoHostLab,
  agents: Record<HostKey, AgentApi>,
  from: HostKey,
  to: HostKey,
  transport: string,
): Promise<BenchRun> {
  const overrides = TRANSPORTS[transport];
  if (overrides === undefined) throw new Error(`unknown transport ${transport}`);
  const { id } = await agents[from].startMigration({
    vm: 'bench-guest',
    to: lab.agents[to].address,
    options: overrides,
  });
  const cpu = {
    from: new NamespaceCpu(lab.agents[from].netns ?? ''),
    to: new NamespaceCpu(lab.agents[to].netns ?? ''),
  };
  let measuring = false;
  let report: MigrationReport | undefined;
  while (report === undefined) {
    const m = await agents[from].migration(id);
    if (!measuring && (m.live?.state === 'migrating' || m.state === 'migrating')) {
      cpu.from.start();
      cpu.to.start();
      measuring = true;
    }
    if (isTerminalMigrationState(m.state) && m.report !== null) report = m.report as MigrationReport;
    // Poll often until the CPU window opens, then gently: each poll is a TLS request the agents serve.
    else await new Promise((r) => setTimeout(r, measuring ? 250 : 50));
  }
  const none = { total: 0, byKind: {} };
  const cpuSource = measuring ? cpu.from.stop() : none;
  const cpuDestination = measuring ? cpu.to.stop() : none;
  if (report.status !== 'completed')
    throw new Error(`${transport} migration ${from}->${to} ${report.status}: ${report.error ?? ''}`);
  return {
    transport,
    from: lab.agents[from].name,
    to: lab.agents[to].name,
    gbps: report.gbps,
    seconds: report.seconds,
    bytes: report.bytes,
    downtimeMs: report.downtimeMs,
    channels: report.channels,
    tls: report.tls,
    cpuSourceSeconds: cpuSource.total,
    cpuDestinationSeconds: cpuDestination.total,
    cpuSourceByKind: cpuSource.byKind,
    cpuDestinationByKind: cpuDestination.byKind,
  };
}

/** The memory rows: the idle guest moves back and forth over each transport, `runs` times; then it is stopped. */
async function benchMemory(
  lab: TwoHostLab,
  agents: Record<HostKey, AgentApi>,
  o: {
    memoryMiB: number;
    linkGbps: number | undefined;
    runs: number;
    transports: string[];
    byTransport: Map<string, BenchRun[]>;
    say: (line: string) => void;
  },
): Promise<void> {
  const { memoryMiB, linkGbps, runs, transports, byTransport, say } = o;
  // An idle guest (dirty=0) with slowly paced verification: memory full of non-zero data, little CPU.
  const append = guestAppend({ memMiB: memoryMiB, dirtyMiBps: 0, verifyMiBps: 16 });
  await agents.a.startVm(
    { name: 'bench-guest', memoryMiB: guestRamMiB(memoryMiB), vcpus: 1, kernel: guestKernelPath(), append },
    { timeoutMs: 120_000 },
  );
  await agents.a.vmHealth('bench-guest', { minOk: 2, waitMs: 60_000 });
  say(
    `guest ready (${append}); link ${linkGbps === undefined ? 'unshaped veth' : `${linkGbps} Gbit/s`}; ${runs} run(s) of ${transports.join(', ')}`,
  );
  let here: HostKey = 'a';
  for (let run = 1; run <= runs; run++) {
    for (const transport of transports) {
      const there: HostKey = here === 'a' ? 'b' : 'a';
      const r = await migrateOnce(lab, agents, here, there, transport);
      byTransport.get(transport)?.push(r);
      say(
        `run ${run} ${transport.padEnd(12)} ${r.from}->${r.to} ${r.gbps.toFixed(2)} Gbit/s  ${r.seconds.toFixed(2)} s  CPU ${r.cpuSourceSeconds.toFixed(2)} / ${r.cpuDestinationSeconds.toFixed(2)} s`,
      );
      here = there;
    }
  }
  await agents[here].stopVm('bench-guest');
}

/** The block-migration rows: the disk VM moves back and forth over each transport, `runs` times. */
async function benchBlock(
  lab: TwoHostLab,
  agents: Record<HostKey, AgentApi>,
  o: {
    diskMiB: number;
    runs: number;
    runsByTransport: Map<string, BlockRun[]>;
    say: (line: string) => void;
  },
): Promise<void> {
  if (o.runsByTransport.size === 0) return;
  await startDiskVm(lab, agents.a, o.diskMiB);
  o.say(`disk guest ready (${o.diskMiB} MiB local raw disk, every byte written)`);
  let here: HostKey = 'a';
  for (let run = 1; run <= o.runs; run++) {
    for (const [transport, runs] of o.runsByTransport) {
      const there: HostKey = here === 'a' ? 'b' : 'a';
      const r = await blockMigrateOnce(
        lab,
        agents,
        { from: here, to: there },
        transport,
        TRANSPORTS[transport] ?? {},
      );
      runs.push(r);
      o.say(
        `run ${run} block ${transport.padEnd(12)} ${r.from}->${r.to} ${r.diskGiBps.toFixed(2)} GiB/s  ${r.diskSeconds.toFixed(2)} s`,
      );
      here = there;
    }
  }
}

/** --disk-mib and --block-transports, checked. */
function blockOptions(values: { 'disk-mib'?: string; 'block-transports'?: string }): {
  diskMiB: number;
  transports: string[];
} {
  const diskMiB = Number(values['disk-mib']);
  if (!Number.isInteger(diskMiB) || diskMiB < 0)
    throw new Error(`--disk-mib must be a whole number >= 0, got ${values['disk-mib']}`);
  const transports = (values['block-transports'] ?? '').split(',').filter(Boolean);
  for (const t of transports)
    if (!(t in TRANSPORTS) || t === 'naive-tunnel')
      throw new Error(`--block-transports: unknown ${t}; known: native, native-tls, tunnelled`);
  return { diskMiB, transports: diskMiB > 0 ? transports : [] };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean' },
      pin: { type: 'boolean' },
      readme: { type: 'boolean' },
      'link-gbps': { type: 'string' },
      'memory-mib': { type: 'string', default: '1024' },
      runs: { type: 'string', default: '3' },
      transports: { type: 'string', default: DEFAULT_TRANSPORTS.join(',') },
      // Block migration rows: a local disk of this size, over these transports (0 or '' leaves them out).
      'disk-mib': { type: 'string', default: '1024' },
      'block-transports': { type: 'string', default: 'native,native-tls,tunnelled' },
      channels: { type: 'string', default: 'auto' },
      // Pinned by default so figures compare from run to run and machine to machine.
      accel: { type: 'string', default: 'tcg' },
      out: { type: 'string', default: join(packageRoot(), 'bench', 'results') },
    },
  });
  const linkGbps = values['link-gbps'] !== undefined ? Number(values['link-gbps']) : undefined;
  const memoryMiB = Number(values['memory-mib']);
  const runs = Number(values.runs);
  const channels = values.channels === 'auto' ? undefined : Number(values.channels);
  if (channels !== undefined && (!Number.isInteger(channels) || channels < 1))
    throw new Error(`--channels must be auto or a positive integer, got ${values.channels}`);
  const transports = (values.transports ?? '').split(',').filter(Boolean);
  for (const t of transports)
    if (!(t in TRANSPORTS))
      throw new Error(`--transports: unknown ${t}; known: ${Object.keys(TRANSPORTS).join(', ')}`);
  if (linkGbps !== undefined && !(linkGbps > 0))
    throw new Error(`--link-gbps must be a positive number, got ${values['link-gbps']}`);
  if (!Number.isInteger(memoryMiB) || memoryMiB < 64)
    throw new Error(`--memory-mib must be an integer >= 64, got ${values['memory-mib']}`);
  if (!Number.isInteger(runs) || runs < 1)
    throw new Error(`--runs must be a positive integer, got ${values.runs}`);
  const accel = values.accel;
  if (accel !== 'tcg' && accel !== 'kvm' && accel !== 'auto')
    throw new Error(`--accel must be tcg, kvm or auto, got ${accel}`);
  const block = blockOptions(values);
  if (values.readme === true && values.pin !== true)
    throw new Error('--readme writes the pinned tables: use it with --pin');
  if (!canUseNetns())
    throw new Error('the benchmark needs root: it builds two hosts from network namespaces');
  const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

  const lab = await TwoHostLab.create({
    accel,
    prefix: 'vmfb',
    subnet: 30,
    linkGbps,
    novaConf: `[vmferry]\npermit_cleartext = True\n${channels !== undefined ? `channels = ${channels}\n` : ''}dirty_rate_sample_seconds = 1\n`,
  });
  const byTransport = new Map<string, BenchRun[]>(transports.map((t) => [t, []]));
  const blockRuns = new Map<string, BlockRun[]>(block.transports.map((t) => [t, []]));
  let accelerator = { accelerator: accel as string, reason: '' };
  try {
    await lab.start();
    if (values.pin === true) {
      for (const [key, cpu] of PIN)
        say(
          `pinned host ${key} to cpu ${cpu}: pids ${pinNamespace(lab.agents[key].netns ?? '', cpu).join(' ')}`,
        );
    }
    const host = await lab.hostSummary('a');
    accelerator = { accelerator: host.accelerator, reason: host.acceleratorReason };
    say(`accelerator ${host.accelerator} (--accel ${accel}: ${host.acceleratorReason})`);
    const agents = { a: new AgentApi(lab.client('a')), b: new AgentApi(lab.client('b')) };
    if (transports.length > 0)
      await benchMemory(lab, agents, { memoryMiB, linkGbps, runs, transports, byTransport, say });
    await benchBlock(lab, agents, { diskMiB: block.diskMiB, runs, runsByTransport: blockRuns, say });
  } finally {
    await lab.close();
  }
  const results = transports.map((t) => summarize(t, byTransport.get(t) ?? []));
  const blockResults = [...blockRuns].map(([t, r]) => summarizeBlock(t, r));
  // The tunnel's server picks the first suite of its list (honorCipherOrder).
  const cipherSuite = DEFAULT_CIPHER_SUITES.split(':')[0] ?? '';
  const cipher = await cipherCpuPerGiB(cipherSuite, values.pin === true ? { cpu: PIN[0][1] } : {});
  say(`cipher floor: ${cipherSuite} ${cipher.toFixed(3)} CPU s/GiB on one core`);
  const pinned = pinnedFigures(results, cipher);
  const json = {
    pinned: values.pin === true,
    cipherSuite,
    cipherCpuPerGiB: Math.round(cipher * 1000) / 1000,
    projectedHosts: PROJECTED_HOSTS,
    linkGbps: linkGbps ?? null,
    memoryMiB,
    channels,
    accelerator: accelerator.accelerator,
    acceleratorReason: accelerator.reason,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    results: results.map((r) => ({ ...r, ...pinned.find((p) => p.transport === r.transport) })),
    diskMiB: block.diskMiB,
    blockResults,
  };
  const tables = [
    `\`${json.command}\` (${json.date.slice(0, 10)}, ${values.pin === true ? 'one core per host' : 'hosts share all cores'}, ` +
      `${memoryMiB} MiB guest, ${runs} run(s); the second table: relay against the cipher, and the projections)`,
    // --transports '' measures the disks only: no memory tables.
    ...(results.length > 0
      ? [
          '',
          ...resultTable(results, linkGbps, accelerator.accelerator),
          '',
          ...pinnedTable(results, pinned, { suite: cipherSuite, cpuPerGiB: cipher }),
        ]
      : []),
    ...(blockResults.length > 0 ? ['', ...blockTable(blockResults, block.diskMiB)] : []),
  ];
  mkdirSync(values.out ?? '.', { recursive: true });
  writeFileSync(join(values.out ?? '.', 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(
    join(values.out ?? '.', 'latest.svg'),
    resultSvg(
      results,
      `migration of ${memoryMiB} MiB under ${accelerator.accelerator.toUpperCase()}, ${linkGbps === undefined ? 'unshaped veth' : `${linkGbps} Gbit/s link`} (median, min-max)`,
    ),
  );
  if (values.readme === true) {
    const readme = join(packageRoot(), 'README.md');
    writeFileSync(readme, replaceReadmeBlock(readFileSync(readme, 'utf8'), 'bench:pinned', tables));
    // The tables as prettier aligns them, so the README stays as `npm run lint` wants it.
    execFileSync(join(packageRoot(), 'node_modules', '.bin', 'prettier'), ['--write', readme], {
      stdio: 'ignore',
    });
    say('README.md: the bench:pinned block rewritten');
  }
  if (values.json === true) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else process.stdout.write(`${tables.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
