/**
 * Two "hosts" (network namespaces joined by a veth link, 198.18.x.0/24), a
 * paused QEMU with random RAM on host A, and migrations to a QEMU on host B
 * over each transport, alternating, several times:
 *
 *   native     QEMU multifd over TCP between the hosts (no encryption)
 *   native-1   QEMU single stream over TCP (reference for the naive relay)
 *   tunnelled  multifd through the agents: each channel its own TLS connection,
 *              relayed by the agents' worker processes (TlsFrontend + SourceTunnel)
 *   tunnelled-1  one stream (no multifd) through the same agents: the relay design alone
 *   naive      one stream through one TLS connection relayed by one thread of
 *              one process per host (NaiveTunnel): the design the seed complains about
 *
 * One agent-like process per host (this script with `agent`, started inside the
 * namespace) holds the frontend and its workers. Needs root.
 *
 *   node dist/bench/tunnel-throughput.js [--memory-mib 1024] [--runs 3] [--channels 4]
 *       [--workers 2] [--link-gbps N] [--transports native,tunnelled,naive]
 *       [--tuning '{"workerNice":-10}'] [--prealloc] [--pin] [--max-bandwidth-mbs '{"tunnelled":300}'] [--json]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTwoHostNetwork, type TwoHostNetwork } from '../src/lab/netns.js';
import { createTestPki, type TlsIdentity } from '../src/pki/index.js';
import { QemuVm, memoryOnlyArgv } from '../src/qemu/index.js';
import { CLK_TCK, cpuTicks } from './proc-cpu.js';
import { median } from './report.js';
import { NaiveTunnel, TlsFrontend, type RelayTuning, type SourceTunnel } from '../src/transport/index.js';
import { ROUTE_ROLES } from '../src/agent/index.js';

const QEMU = 'qemu-system-x86_64';
const AGENT_PORT = 7443;
const NATIVE_PORT = 4444;
const NAIVE_PORT = 7444;
const TOKEN = 'bench-token-0123456789abcdef';

/** What one run measures: a transport, and for some a channel count. */
type Variant = 'native' | 'native-1' | 'tunnelled' | 'tunnelled-1' | 'naive';

// ---------------------------------------------------------------- agent side

type AgentCommand =
  | {
      cmd: 'start';
      tls: { ca: string; cert: string; key: string };
      listen?: { host: string; port: number };
      workers: number;
      tuning: Partial<RelayTuning>;
      dir: string;
    }
  | { cmd: 'accept'; migrationId: string; targetPath: string; maxConnections: number }
  | { cmd: 'open-source'; migrationId: string; listenPath: string; remote: { host: string; port: number } }
  | { cmd: 'naive-dest'; migrationId: string; targetPath: string; listen: { host: string; port: number } }
  | { cmd: 'naive-source'; migrationId: string; listenPath: string; remote: { host: string; port: number } }
  | { cmd: 'close' }
  | { cmd: 'cpu' }
  | { cmd: 'exit' };

function agent(): void {
  let frontend: TlsFrontend | undefined;
  let identity: TlsIdentity | undefined;
  let tuning: Partial<RelayTuning> = {};
  const open: { close(): Promise<unknown> }[] = [];
  const closeTunnels: (() => Promise<unknown>)[] = [];
  const reply = (value: unknown): void => void process.send?.({ ok: true, value });
  process.on('message', (raw: unknown) => {
    const m = raw as AgentCommand;
    const run = async (): Promise<unknown> => {
      switch (m.cmd) {
        case 'start':
          identity = {
            ca: Buffer.from(m.tls.ca),
            cert: Buffer.from(m.tls.cert),
            key: Buffer.from(m.tls.key),
          };
          tuning = m.tuning;
          frontend = await TlsFrontend.start({
            ...(m.listen !== undefined
              ? { listen: m.listen }
              : { localPath: join(m.dir, `agent-${process.pid}.sock`) }),
            tls: identity,
            internalApiPath: join(m.dir, 'no-api.sock'),
            workers: m.workers,
            tunnelRoles: ROUTE_ROLES.tunnel,
            tuning,
          });
          return frontend.address;
        case 'accept': {
          const f = frontend;
          if (f === undefined) throw new Error('not started');
          await f.acceptTunnel({
            migrationId: m.migrationId,
            token: TOKEN,
            peerCommonName: 'agent-a',
            targetPath: m.targetPath,
            maxConnections: m.maxConnections,
          });
          closeTunnels.push(() => f.closeTunnel(m.migrationId));
          return undefined;
        }
        case 'open-source': {
          if (frontend === undefined) throw new Error('not started');
          const t: SourceTunnel = await frontend.openSourceTunnel({
            migrationId: m.migrationId,
            token: TOKEN,
            listenPath: m.listenPath,
            remote: m.remote,
            expectedPeerCommonName: 'agent-b',
          });
          open.push(t);
          return undefined;
        }
        case 'naive-dest': {
          if (identity === undefined) throw new Error('not started');
          const n = await NaiveTunnel.listenDestination({
            listen: m.listen,
            tls: identity,
            tunnelRoles: ROUTE_ROLES.tunnel,
            registration: {
              migrationId: m.migrationId,
              token: TOKEN,
              peerCommonName: 'agent-a',
              targetPath: m.targetPath,
              maxConnections: 1,
            },
            ...(tuning.cipherSuites !== undefined ? { cipherSuites: tuning.cipherSuites } : {}),
          });
          open.push(n);
          return undefined;
        }
        case 'naive-source': {
          if (identity === undefined) throw new Error('not started');
          const n = await NaiveTunnel.openSource({
            listenPath: m.listenPath,
            remote: m.remote,
            tls: identity,
            migrationId: m.migrationId,
            token: TOKEN,
            expectedPeerCommonName: 'agent-b',
            ...(tuning.cipherSuites !== undefined ? { cipherSuites: tuning.cipherSuites } : {}),
          });
          open.push(n);
          return undefined;
        }
        case 'close':
          for (const o of open.splice(0)) await o.close();
          for (const c of closeTunnels.splice(0)) await c();
          return undefined;
        case 'cpu': {
          const own = process.cpuUsage();
          const workers = frontend === undefined ? [] : await frontend.stats();
          const micros = (u: { cpuUserMicros: number; cpuSystemMicros: number }): number =>
            u.cpuUserMicros + u.cpuSystemMicros;
          return {
            main: (own.user + own.system) / 1e6,
            workers: workers.reduce((s, w) => s + micros(w), 0) / 1e6,
          };
        }
        case 'exit':
          await frontend?.close();
          setImmediate(() => process.exit(0));
          return undefined;
      }
    };
    run().then(reply, (err: unknown) =>
      process.send?.({ ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  process.send?.({ ok: true, value: 'ready' });
}

// ---------------------------------------------------------------- driver side

class AgentHandle {
  private queue: Promise<unknown> = Promise.resolve();
  constructor(readonly child: ChildProcess) {}

  static async start(netns: string, cpu: string | undefined): Promise<AgentHandle> {
    const argv = [
      'ip',
      'netns',
      'exec',
      netns,
      process.execPath,
      '--enable-source-maps',
      fileURLToPath(import.meta.url),
      'agent',
    ];
    const [command = 'ip', ...args] = cpu === undefined ? argv : ['taskset', '-c', cpu, ...argv];
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const handle = new AgentHandle(child);
    await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`agent in ${netns} exited with ${code}`)));
    });
    return handle;
  }

  call<T>(command: AgentCommand): Promise<T> {
    const next = this.queue.then(
      () =>
        new Promise<T>((resolve, reject) => {
          this.child.once('message', (raw: unknown) => {
            const m = raw as { ok: boolean; value?: unknown; error?: string };
            if (m.ok) resolve(m.value as T);
            else reject(new Error(m.error));
          });
          this.child.send(command);
        }),
    );
    this.queue = next.catch(() => undefined);
    return next;
  }
}

interface Cpu {
  main: number;
  workers: number;
}

function qemuCpuSeconds(pid: number): number {
  return cpuTicks(pid) / CLK_TCK;
}

async function startQemu(
  dir: string,
  name: string,
  netns: string,
  cpu: string | undefined,
  memoryMiB: number,
  memory: string[],
  extra: string[],
): Promise<QemuVm> {
  const runDir = join(dir, name);
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const pin = cpu === undefined ? [] : ['-c', cpu, 'ip'];
  return QemuVm.start(name, runDir, cpu === undefined ? 'ip' : 'taskset', [
    ...pin,
    'netns',
    'exec',
    netns,
    QEMU,
    ...memoryOnlyArgv({ name, runDir, memoryMiB, memory, extra }),
  ]);
}

interface RunResult {
  transport: Variant;
  gbps: number;
  seconds: number;
  transferredMiB: number;
  /** CPU seconds per side during the migration: QEMU, agent main, agent workers. */
  cpu: { source: { qemu: number; agent: number }; destination: { qemu: number; agent: number } };
  status: string;
}

async function migrateOnce(
  transport: Variant,
  ctx: {
    dir: string;
    net: TwoHostNetwork;
    ramFile: string;
    memoryMiB: number;
    channels: number;
    agentA: AgentHandle;
    agentB: AgentHandle;
    run: number;
    prealloc: string;
    maxBandwidth: Partial<Record<Variant, number>>;
    cpus: [string, string] | undefined;
  },
): Promise<RunResult> {
  const { dir, net, memoryMiB } = ctx;
  const migrationId = `bench-${transport}-${ctx.run}`;
  const multifd = transport === 'native' || transport === 'tunnelled';
  const source = await startQemu(
    dir,
    'src',
    net.a.netns,
    ctx.cpus?.[0],
    memoryMiB,
    [
      '-object',
      `memory-backend-file,id=m0,size=${memoryMiB}M,mem-path=${ctx.ramFile},share=off${ctx.prealloc}`,
    ],
    [],
  );
  const destination = await startQemu(
    dir,
    'dst',
    net.b.netns,
    ctx.cpus?.[1],
    memoryMiB,
    ['-object', `memory-backend-ram,id=m0,size=${memoryMiB}M${ctx.prealloc}`],
    ['-incoming', 'defer'],
  );
  try {
    for (const vm of [source, destination]) {
      if (multifd) {
        await vm.qmp.execute('migrate-set-capabilities', {
          capabilities: [{ capability: 'multifd', state: true }],
        });
        await vm.qmp.execute('migrate-set-parameters', { 'multifd-channels': ctx.channels });
      }
    }
    await source.qmp.execute('migrate-set-parameters', {
      'max-bandwidth': ctx.maxBandwidth[transport] ?? 100 * 1024 * 1024 * 1024,
      'downtime-limit': 5000,
    });
    const incoming = join(dir, `${migrationId}-in.sock`);
    const outgoing = join(dir, `${migrationId}-out.sock`);
    let incomingUri: string;
    let outgoingUri: string;
    switch (transport) {
      case 'native':
      case 'native-1':
        incomingUri = `tcp:${net.b.address}:${NATIVE_PORT}`;
        outgoingUri = incomingUri;
        break;
      case 'tunnelled':
      case 'tunnelled-1':
        await ctx.agentB.call({
          cmd: 'accept',
          migrationId,
          targetPath: incoming,
          maxConnections: 1 + ctx.channels,
        });
        await ctx.agentA.call({
          cmd: 'open-source',
          migrationId,
          listenPath: outgoing,
          remote: { host: net.b.address, port: AGENT_PORT },
        });
        incomingUri = `unix:${incoming}`;
        outgoingUri = `unix:${outgoing}`;
        break;
      case 'naive':
        await ctx.agentB.call({
          cmd: 'naive-dest',
          migrationId,
          targetPath: incoming,
          listen: { host: net.b.address, port: NAIVE_PORT },
        });
        await ctx.agentA.call({
          cmd: 'naive-source',
          migrationId,
          listenPath: outgoing,
          remote: { host: net.b.address, port: NAIVE_PORT },
        });
        incomingUri = `unix:${incoming}`;
        outgoingUri = `unix:${outgoing}`;
        break;
    }
    await destination.qmp.execute('migrate-incoming', { uri: incomingUri });
    const cpu0 = {
      a: await ctx.agentA.call<Cpu>({ cmd: 'cpu' }),
      b: await ctx.agentB.call<Cpu>({ cmd: 'cpu' }),
      qa: qemuCpuSeconds(source.pid),
      qb: qemuCpuSeconds(destination.pid),
    };
    const t0 = process.hrtime.bigint();
    await source.qmp.execute('migrate', { uri: outgoingUri });
    let status: {
      status: string;
      'total-time'?: number;
      ram?: { transferred: number };
      'error-desc'?: string;
    };
    for (;;) {
      status = await source.qmp.execute('query-migrate');
      if (['completed', 'failed', 'cancelled'].includes(status.status)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu1 = {
      a: await ctx.agentA.call<Cpu>({ cmd: 'cpu' }),
      b: await ctx.agentB.call<Cpu>({ cmd: 'cpu' }),
      qa: qemuCpuSeconds(source.pid),
      qb: qemuCpuSeconds(destination.pid),
    };
    if (status.status !== 'completed') {
      throw new Error(`${transport} migration ${status.status}: ${status['error-desc'] ?? ''}`);
    }
    const qemuSeconds = (status['total-time'] ?? seconds * 1000) / 1000;
    const agentCpu = (x: Cpu, y: Cpu): number => y.main + y.workers - x.main - x.workers;
    return {
      transport,
      // Guest RAM moved over QEMU's own clock for it: the figure QEMU reports as throughput.
      gbps: (memoryMiB * 1024 * 1024 * 8) / qemuSeconds / 1e9,
      seconds: qemuSeconds,
      transferredMiB: (status.ram?.transferred ?? 0) / 1024 / 1024,
      cpu: {
        source: { qemu: cpu1.qa - cpu0.qa, agent: agentCpu(cpu0.a, cpu1.a) },
        destination: { qemu: cpu1.qb - cpu0.qb, agent: agentCpu(cpu0.b, cpu1.b) },
      },
      status: status.status,
    };
  } finally {
    await ctx.agentA.call({ cmd: 'close' }).catch(() => undefined);
    await ctx.agentB.call({ cmd: 'close' }).catch(() => undefined);
    await source.stop(3000).catch(() => undefined);
    await destination.stop(3000).catch(() => undefined);
    rmSync(join(dir, `${migrationId}-in.sock`), { force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'memory-mib': { type: 'string', default: '1024' },
      runs: { type: 'string', default: '3' },
      channels: { type: 'string', default: '4' },
      workers: { type: 'string', default: '2' },
      'link-gbps': { type: 'string' },
      transports: { type: 'string', default: 'native,tunnelled,naive' },
      tuning: { type: 'string', default: '{}' },
      json: { type: 'boolean', default: false },
      pin: { type: 'boolean', default: false },
      'max-bandwidth-mbs': { type: 'string', default: '{}' },
      prealloc: { type: 'boolean', default: false },
    },
  });
  const memoryMiB = Number(values['memory-mib']);
  const runs = Number(values.runs);
  const channels = Number(values.channels);
  const workers = Number(values.workers);
  const linkText = values['link-gbps'];
  const linkGbps = linkText === undefined ? undefined : Number(linkText);
  const transports = values.transports.split(',') as Variant[];
  const tuning = JSON.parse(values.tuning) as Partial<RelayTuning>;
  const { json } = values;
  // --pin: each "host" gets its own CPU (host A: cpu 0, host B: cpu 1) instead of both sharing all of them.
  const cpus: [string, string] | undefined = values.pin ? ['0', '1'] : undefined;
  // QEMU 7.2's multifd sender busy-waits for a free channel when the channels are slower than it:
  // a bandwidth cap just above what the path carries turns that spinning into sleeping.
  const maxBandwidth = JSON.parse(values['max-bandwidth-mbs']) as Partial<Record<Variant, number>>;
  for (const k of Object.keys(maxBandwidth) as Variant[])
    maxBandwidth[k] = (maxBandwidth[k] ?? 0) * 1024 * 1024;
  // Fault all guest RAM in at start (both sides), so the runs measure the transport, not page faults.
  const prealloc = values.prealloc ? ',prealloc=on' : '';
  const say = (line: string): void => void (json ? process.stderr : process.stdout).write(`${line}\n`);

  const dir = join(tmpdir(), 'vmf-bench-tunnel');
  mkdirSync(dir, { recursive: true });
  const ramFile = join(dir, `ram-${memoryMiB}M.bin`);
  if (!existsSync(ramFile) || statSync(ramFile).size !== memoryMiB * 1024 * 1024) {
    say(`filling ${ramFile} with ${memoryMiB} MiB from /dev/urandom`);
    spawnSync('sh', ['-c', `head -c ${memoryMiB}M /dev/urandom > ${ramFile}`]);
  }
  const net = createTwoHostNetwork({
    prefix: 'vmfbt',
    subnet: 77,
    ...(linkGbps !== undefined ? { linkGbps } : {}),
  });
  const pki = await createTestPki('vmferry-bench-ca');
  const pem = (id: TlsIdentity): { ca: string; cert: string; key: string } => ({
    ca: id.ca.toString(),
    cert: id.cert.toString(),
    key: id.key.toString(),
  });
  let agentA: AgentHandle | undefined;
  let agentB: AgentHandle | undefined;
  const results: RunResult[] = [];
  try {
    agentA = await AgentHandle.start(net.a.netns, cpus?.[0]);
    agentB = await AgentHandle.start(net.b.netns, cpus?.[1]);
    await agentA.call({
      cmd: 'start',
      tls: pem(await pki.issue('agent-a', [net.a.address])),
      workers,
      tuning,
      dir,
    });
    await agentB.call({
      cmd: 'start',
      tls: pem(await pki.issue('agent-b', [net.b.address])),
      listen: { host: net.b.address, port: AGENT_PORT },
      workers,
      tuning,
      dir,
    });
    say(
      `memory ${memoryMiB} MiB, ${channels} multifd channels, ${workers} workers per agent, link ${linkGbps ?? 'unshaped'}, ` +
        `${cpus === undefined ? 'hosts share all CPUs' : 'one CPU per host'}, tuning ${JSON.stringify(tuning)}`,
    );
    for (let run = 0; run < runs; run++) {
      for (const transport of transports) {
        const r = await migrateOnce(transport, {
          dir,
          net,
          ramFile,
          memoryMiB,
          channels,
          agentA,
          agentB,
          run,
          prealloc,
          maxBandwidth,
          cpus,
        });
        results.push(r);
        const c = r.cpu;
        say(
          `${transport.padEnd(10)} ${r.gbps.toFixed(2).padStart(6)} Gbit/s  ${r.seconds.toFixed(2)} s  ` +
            `cpu-s src qemu ${c.source.qemu.toFixed(2)} agent ${c.source.agent.toFixed(2)} | ` +
            `dst qemu ${c.destination.qemu.toFixed(2)} agent ${c.destination.agent.toFixed(2)}  ` +
            `(load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`,
        );
      }
    }
  } finally {
    await agentA?.call({ cmd: 'exit' }).catch(() => undefined);
    await agentB?.call({ cmd: 'exit' }).catch(() => undefined);
    net.destroy();
    pki.dispose();
  }
  const summary = transports.map((transport) => {
    const mine = results.filter((r) => r.transport === transport);
    const g = mine.map((r) => r.gbps);
    const gib = memoryMiB / 1024;
    const perGiB = (f: (r: RunResult) => number): number => median(mine.map(f)) / gib;
    return {
      transport,
      gbps: median(g),
      min: Math.min(...g),
      max: Math.max(...g),
      cpuPerGiB: {
        sourceQemu: perGiB((r) => r.cpu.source.qemu),
        sourceAgent: perGiB((r) => r.cpu.source.agent),
        destinationQemu: perGiB((r) => r.cpu.destination.qemu),
        destinationAgent: perGiB((r) => r.cpu.destination.agent),
      },
      runs: mine,
    };
  });
  const native = summary.find((s) => s.transport === 'native')?.gbps;
  const naive = summary.find((s) => s.transport === 'naive')?.gbps;
  say('');
  say('transport   Gbit/s median (range)    % native  x naive   cpu-s/GiB src qemu+agent | dst qemu+agent');
  for (const s of summary) {
    const c = s.cpuPerGiB;
    say(
      `${s.transport.padEnd(10)} ${s.gbps.toFixed(2).padStart(6)} (${s.min.toFixed(2)}-${s.max.toFixed(2)})`.padEnd(
        36,
      ) +
        `${native !== undefined ? `${((100 * s.gbps) / native).toFixed(0)}%` : '-'}`.padStart(6) +
        `${naive !== undefined ? `${(s.gbps / naive).toFixed(1)}x` : '-'}`.padStart(9) +
        `    ${c.sourceQemu.toFixed(2)}+${c.sourceAgent.toFixed(2)} | ${c.destinationQemu.toFixed(2)}+${c.destinationAgent.toFixed(2)}`,
    );
  }
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ linkGbps: linkGbps ?? null, memoryMiB, channels, workers, tuning, results: summary }, null, 2)}\n`,
    );
  }
}

if (process.argv[2] === 'agent') agent();
else await main();
