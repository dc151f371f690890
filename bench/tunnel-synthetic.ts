/**
 * Tunnel relay cost without QEMU: a load generator writes N channels of
 * constant data into a source tunnel; the destination tunnel delivers them to
 * a sink. Both agents' frontends run in this process (their workers are
 * separate processes); the generator and the sink are child processes. Prints
 * Gbit/s and worker CPU seconds per GiB for each side, for each variant, and
 * each against its TLS suite's cipher alone (cipher-floor.ts), measured after
 * every run on the source's core. Variants alternate within a run; the table
 * gives the median and range over the runs.
 *
 *   node dist/bench/tunnel-synthetic.js [--mib 1024] [--block 131072] [--channels 4] [--workers 2] [--runs 2]
 *       [--suites all|TLS_AES_128_GCM_SHA256,...] [--pin] [--json]
 *       [--variant '{"label":"x","tuning":{...},"workers":1,"keepHeap":true,"execArgv":[...]}' ...]
 *       [--variant '{"label":"native","relay":"native","native":{"sealed":false}}']
 *
 * --block: the generator's write size (QEMU 7.2 writes up to 64 iovecs, 32 pages with their
 * headers, about 128 KiB, per writev on its migration stream). --suites: each variant once per suite. --pin: source workers and generator on cpu 0,
 * destination workers and sink on cpu 1 (hosts with a core each, as `npm run bench -- --pin`).
 * A variant with `"relay":"native"` runs each end as a native relay process
 * (native/vmferry-relay.c) instead of the front doors' workers, same pinning; its CPU
 * is the relay processes' (/proc/<pid>/stat, exited connection threads included), and its
 * row names how the source relay sent its records as its connections reported it on closing:
 * `sealed` (its own TLS records, the default) or `ssl-write` (`"native":{"sealed":false}`).
 */
import { execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestPki, type TestPki, type TlsIdentity } from '../src/pki/index.js';
import { NativeRelay, TlsFrontend, type WorkerStats } from '../src/transport/index.js';
import { parseArgs } from 'node:util';
import { ROUTE_ROLES } from '../src/agent/index.js';
import { SUITE_CIPHERS, cipherCpuPerGiB } from './cipher-floor.js';
import { CLK_TCK, cpuTicks, minorFaults } from './proc-cpu.js';
import {
  pathOf,
  sendPathOf,
  suiteOf,
  suiteVariants,
  summarizeVariant,
  summaryLine,
  type Measured,
  type Variant,
} from './relay-summary.js';

/** --pin: the source side (its relay workers and the load generator, QEMU's stand-in) on one core, the destination's workers on the other. */
const SOURCE_CPU = '0';
const DESTINATION_CPU = '1';

function pin(pids: readonly number[], cpu: string): void {
  for (const pid of pids) execFileSync('taskset', ['-a', '-pc', cpu, String(pid)], { stdio: 'ignore' });
}

/** The destination QEMU's stand-in: counts what each channel delivers; reports the total when all have ended. */
function sink(): void {
  const [sinkPath = '', channelsText] = process.argv.slice(3);
  const channels = Number(channelsText);
  let done = 0;
  let bytes = 0;
  const server = createServer((s) => {
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('end', () => {
      s.end();
      done += 1;
      if (done === channels) process.send?.({ bytes });
    });
  });
  server.listen(sinkPath, () => process.send?.('ready'));
}

/** The source QEMU's stand-in: on 'go', writes `mib` MiB of constant data over `channels` connections. */
function loadgen(): void {
  const [srcPath = '', channelsText, mibText, blockText] = process.argv.slice(3);
  const channels = Number(channelsText);
  const block = Buffer.alloc(Number(blockText), 0x5a);
  const blocksPerChannel = (Number(mibText) * 2 ** 20) / block.length / channels;
  process.send?.('ready');
  process.on('message', (m) => {
    if (m !== 'go') return;
    for (let i = 0; i < channels; i++) {
      const c = connect(srcPath);
      let sent = 0;
      const pump = (): void => {
        while (sent < blocksPerChannel) {
          sent += 1;
          if (!c.write(block)) {
            c.once('drain', pump);
            return;
          }
        }
        c.end();
      };
      c.on('connect', pump);
      c.on('error', (e) => process.stderr.write(`loadgen: ${e.message}\n`));
      c.resume();
    }
  });
}

function faults(before: WorkerStats[], after: WorkerStats[]): number {
  let total = 0;
  for (const w of after)
    total += w.minorPageFaults - (before.find((x) => x.pid === w.pid)?.minorPageFaults ?? 0);
  return total;
}

function cpuSeconds(before: WorkerStats[], after: WorkerStats[]): number {
  let total = 0;
  for (const w of after) {
    const b = before.find((x) => x.pid === w.pid);
    total +=
      (w.cpuUserMicros + w.cpuSystemMicros - (b === undefined ? 0 : b.cpuUserMicros + b.cpuSystemMicros)) /
      1e6;
  }
  return total;
}

/** The stand-ins for the two QEMUs, started and (with --pin) pinned like the relays they feed. */
async function standIns(dir: string, channels: number, defaults: { mib: number; block: number }) {
  const self = fileURLToPath(import.meta.url);
  const sinkProcess = fork(self, ['sink', join(dir, 'sink.sock'), String(channels)]);
  const gen = fork(self, [
    'loadgen',
    join(dir, 'qemu-out.sock'),
    String(channels),
    String(defaults.mib),
    String(defaults.block),
  ]);
  await Promise.all([sinkProcess, gen].map((p) => new Promise((r) => p.once('message', r))));
  const run = async (): Promise<{ bytes: number; seconds: number }> => {
    const t0 = process.hrtime.bigint();
    gen.send('go');
    const result = await new Promise<{ bytes: number }>((r) =>
      sinkProcess.once('message', (m) => r(m as { bytes: number })),
    );
    return { bytes: result.bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  };
  return {
    gen,
    sinkProcess,
    run,
    kill: () => {
      gen.kill();
      sinkProcess.kill();
    },
  };
}

/** One run through a native relay process at each end (variant.relay native). */
async function runNative(
  variant: Variant,
  defaults: { mib: number; channels: number; pin: boolean; block: number },
  ids: { a: TlsIdentity; b: TlsIdentity },
): Promise<Omit<Measured, 'cipherCpuPerGiB'> & { load: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmf-synth-'));
  const channels = variant.channels ?? defaults.channels;
  const token = 'synthetic-token-0123456789';
  const common = {
    ...(variant.tuning?.cipherSuites !== undefined ? { cipherSuites: variant.tuning.cipherSuites } : {}),
    ...(variant.native !== undefined ? { tuning: variant.native } : {}),
  };
  const q = await standIns(dir, channels, defaults);
  const sendPaths: ('sealed' | 'ssl-write' | undefined)[] = [];
  const receivePaths: ('opened' | 'ssl-read' | undefined)[] = [];
  const dst = await NativeRelay.listenDestination({
    ...common,
    listen: { host: '127.0.0.1', port: 0 },
    tls: ids.b,
    tunnelRoles: ROUTE_ROLES.tunnel,
    registration: {
      migrationId: 'synth',
      token,
      peerCommonName: 'agent-a',
      targetPath: join(dir, 'sink.sock'),
      maxConnections: channels,
    },
    onEvent: (e) => {
      if (e.type === 'tunnel-connection-closed') receivePaths.push(e.receivePath);
    },
  });
  const src = await NativeRelay.openSource({
    ...common,
    tls: ids.a,
    listenPath: join(dir, 'qemu-out.sock'),
    remote: { host: '127.0.0.1', port: dst.ready.port ?? 0 },
    migrationId: 'synth',
    token,
    expectedPeerCommonName: 'agent-b',
    onEvent: (e) => {
      if (e.type === 'tunnel-connection-closed') sendPaths.push(e.sendPath);
    },
  });
  try {
    if (defaults.pin) {
      pin([src.pid, q.gen.pid ?? 0], SOURCE_CPU);
      pin([dst.pid, q.sinkProcess.pid ?? 0], DESTINATION_CPU);
    }
    const faults = (): number => minorFaults(src.pid) + minorFaults(dst.pid);
    const before = { src: cpuTicks(src.pid), dst: cpuTicks(dst.pid), faults: faults() };
    const result = await q.run();
    const after = { src: cpuTicks(src.pid), dst: cpuTicks(dst.pid), faults: faults() };
    const gib = result.bytes / 2 ** 30;
    // Each source connection reports how it sent its records when it closes, just after the stream ends.
    const reported = (): boolean => sendPaths.length >= channels && receivePaths.length >= channels;
    for (let waited = 0; !reported() && waited < 5000; waited += 50)
      await new Promise((r) => setTimeout(r, 50));
    const sendPath = sendPathOf(sendPaths);
    const receivePath = pathOf(receivePaths);
    return {
      gbps: (result.bytes * 8) / result.seconds / 1e9,
      srcCpuPerGiB: (after.src - before.src) / CLK_TCK / gib,
      dstCpuPerGiB: (after.dst - before.dst) / CLK_TCK / gib,
      faultsPerGiB: (after.faults - before.faults) / gib,
      load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] ?? '',
      ...(sendPath !== undefined ? { sendPath } : {}),
      ...(receivePath !== undefined ? { receivePath } : {}),
    };
  } finally {
    q.kill();
    await src.close();
    await dst.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runOnce(
  variant: Variant,
  defaults: { mib: number; channels: number; workers: number; pin: boolean; block: number },
  pki: TestPki,
  ids: {
    a: TlsIdentity;
    b: TlsIdentity;
  },
): Promise<Omit<Measured, 'cipherCpuPerGiB'> & { load: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmf-synth-'));
  const channels = variant.channels ?? defaults.channels;
  const workers = variant.workers ?? defaults.workers;
  const env =
    variant.keepHeap === true
      ? {
          ...process.env,
          MALLOC_MMAP_THRESHOLD_: String(1024 * 1024),
          MALLOC_TRIM_THRESHOLD_: String(256 * 1024 * 1024),
          MALLOC_TOP_PAD_: String(64 * 1024 * 1024),
        }
      : undefined;
  const common = {
    internalApiPath: join(dir, 'no-api.sock'),
    workers,
    tunnelRoles: ROUTE_ROLES.tunnel,
    ...(variant.tuning !== undefined ? { tuning: variant.tuning } : {}),
    ...(env !== undefined ? { env } : {}),
    ...(variant.execArgv !== undefined ? { execArgv: variant.execArgv } : {}),
  };
  const dst = await TlsFrontend.start({ ...common, listen: { host: '127.0.0.1', port: 0 }, tls: ids.b });
  const src = await TlsFrontend.start({ ...common, localPath: join(dir, 'src-agent.sock'), tls: ids.a });
  const q = await standIns(dir, channels, defaults);
  try {
    if (defaults.pin) {
      pin([...(await src.stats()).map((w) => w.pid), q.gen.pid ?? 0], SOURCE_CPU);
      pin([...(await dst.stats()).map((w) => w.pid), q.sinkProcess.pid ?? 0], DESTINATION_CPU);
    }
    const token = 'synthetic-token-0123456789';
    const address = dst.address;
    if (address === undefined) throw new Error('no address');
    await dst.acceptTunnel({
      migrationId: 'synth',
      token,
      peerCommonName: 'agent-a',
      targetPath: join(dir, 'sink.sock'),
      maxConnections: channels,
    });
    const tunnel = await src.openSourceTunnel({
      migrationId: 'synth',
      token,
      listenPath: join(dir, 'qemu-out.sock'),
      remote: address,
      expectedPeerCommonName: 'agent-b',
    });
    const before = { dst: await dst.stats(), src: await src.stats() };
    const result = await q.run();
    const after = { dst: await dst.stats(), src: await src.stats() };
    await tunnel.close();
    const gib = result.bytes / 2 ** 30;
    return {
      gbps: (result.bytes * 8) / result.seconds / 1e9,
      dstCpuPerGiB: cpuSeconds(before.dst, after.dst) / gib,
      srcCpuPerGiB: cpuSeconds(before.src, after.src) / gib,
      faultsPerGiB: (faults(before.src, after.src) + faults(before.dst, after.dst)) / gib,
      load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] ?? '',
    };
  } finally {
    q.kill();
    await src.close();
    await dst.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const SUITE_NAMES = Object.keys(SUITE_CIPHERS);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '1024' },
      block: { type: 'string', default: String(128 * 1024) },
      channels: { type: 'string', default: '4' },
      workers: { type: 'string', default: '2' },
      runs: { type: 'string', default: '2' },
      variant: { type: 'string', multiple: true, default: [] },
      suites: { type: 'string' },
      pin: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const defaults = {
    mib: Number(values.mib),
    block: Number(values.block),
    channels: Number(values.channels),
    workers: Number(values.workers),
    pin: values.pin,
  };
  const runs = Number(values.runs);
  const suites = values.suites === 'all' ? SUITE_NAMES : (values.suites?.split(',').filter(Boolean) ?? []);
  for (const s of suites) if (!SUITE_NAMES.includes(s)) throw new Error(`unknown TLS 1.3 suite ${s}`);
  const variants = suiteVariants(
    suites,
    values.variant.map((v) => JSON.parse(v) as Variant),
  );
  const pki = await createTestPki();
  const ids = { a: await pki.issue('agent-a'), b: await pki.issue('agent-b') };
  const measured = new Map<string, Measured[]>();
  const log = (line: string) => (values.json ? process.stderr : process.stdout).write(`${line}\n`);
  try {
    // Variants alternate within each run, so background load falls on all of them alike.
    for (let r = 0; r < runs; r++) {
      for (const v of variants) {
        const m =
          v.relay === 'native' ? await runNative(v, defaults, ids) : await runOnce(v, defaults, pki, ids);
        const suite = suiteOf(v);
        const cipher = await cipherCpuPerGiB(suite, values.pin ? { cpu: SOURCE_CPU } : {});
        measured.set(v.label, [...(measured.get(v.label) ?? []), { ...m, cipherCpuPerGiB: cipher }]);
        log(
          `${v.label.padEnd(28)} ${m.gbps.toFixed(2)} Gbit/s  src ${m.srcCpuPerGiB.toFixed(2)}  dst ${m.dstCpuPerGiB.toFixed(2)} ` +
            `cpu-s/GiB  cipher ${cipher.toFixed(3)}  ${Math.round(m.faultsPerGiB)} faults/GiB  (load ${m.load})`,
        );
      }
    }
  } finally {
    pki.dispose();
  }
  const summary = variants.map((v) => summarizeVariant(v.label, suiteOf(v), measured.get(v.label) ?? []));
  const command = `node dist/bench/tunnel-synthetic.js ${process.argv.slice(2).join(' ')}`.trim();
  if (values.json) {
    const out = { command, date: new Date().toISOString(), ...defaults, runs, variants: summary };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  process.stdout.write(
    `\n${command}: ${defaults.mib} MiB in ${defaults.block}-byte writes, ${defaults.channels} channel(s), ${defaults.workers} worker(s) per side, ` +
      `${runs} run(s)${defaults.pin ? ', source on cpu 0, destination on cpu 1' : ''}; median (min-max)\n` +
      '| variant | Gbit/s | source relay CPU s/GiB | destination relay CPU s/GiB | cipher alone s/GiB | relay / cipher (src / dst) |\n' +
      '| --- | --- | --- | --- | --- | --- |\n' +
      summary.map(summaryLine).join('\n') +
      '\n',
  );
}

if (process.argv[2] === 'loadgen') loadgen();
else if (process.argv[2] === 'sink') sink();
else await main();
