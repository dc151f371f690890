/**
 * Tunnel relay cost without QEMU: a load generator writes N channels of
 * constant data into a source tunnel; the destination tunnel delivers them to
 * a sink. Both agents' frontends run in this process (their workers are
 * separate processes); the generator and sink run in a child process. Prints
 * Gbit/s and worker CPU seconds per GiB for each side, for each variant.
 *
 *   node dist/bench/tunnel-synthetic.js [--mib 1024] [--channels 4] [--workers 2] [--runs 2]
 *       [--variant '{"label":"x","tuning":{...},"workers":1,"keepHeap":true,"execArgv":[...]}' ...]
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestPki, type TestPki, type TlsIdentity } from '../src/pki/index.js';
import { TlsFrontend, type RelayTuning, type WorkerStats } from '../src/transport/index.js';
import { parseArgs } from 'node:util';

interface Variant {
  label: string;
  tuning?: Partial<RelayTuning>;
  workers?: number;
  channels?: number;
  /**
   * true: the workers keep freed heap and serve buffers up to 1 MiB from it
   * (glibc tunables), to see whether page faults on fresh buffers matter.
   */
  keepHeap?: boolean;
  /** Node flags for the workers. */
  execArgv?: string[];
}

function loadgen(): void {
  const [sinkPath = '', srcPath = '', channelsText, mibText] = process.argv.slice(3);
  const channels = Number(channelsText);
  const mib = Number(mibText);
  let done = 0;
  let bytes = 0;
  const sink = createServer((s) => {
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('end', () => {
      s.end();
      done += 1;
      if (done === channels) process.send?.({ bytes });
    });
  });
  sink.listen(sinkPath, () => process.send?.('ready'));
  process.on('message', (m) => {
    if (m !== 'go') return;
    const block = Buffer.alloc(1 << 20, 0x5a);
    for (let i = 0; i < channels; i++) {
      const c = connect(srcPath);
      let sent = 0;
      const pump = (): void => {
        while (sent < mib / channels) {
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

async function runOnce(
  variant: Variant,
  defaults: { mib: number; channels: number; workers: number },
  pki: TestPki,
  ids: {
    a: TlsIdentity;
    b: TlsIdentity;
  },
): Promise<{ gbps: number; dstCpuPerGiB: number; srcCpuPerGiB: number; faultsPerGiB: number; load: string }> {
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
    ...(variant.tuning !== undefined ? { tuning: variant.tuning } : {}),
    ...(env !== undefined ? { env } : {}),
    ...(variant.execArgv !== undefined ? { execArgv: variant.execArgv } : {}),
  };
  const dst = await TlsFrontend.start({ ...common, listen: { host: '127.0.0.1', port: 0 }, tls: ids.b });
  const src = await TlsFrontend.start({ ...common, localPath: join(dir, 'src-agent.sock'), tls: ids.a });
  const gen = fork(fileURLToPath(import.meta.url), [
    'loadgen',
    join(dir, 'sink.sock'),
    join(dir, 'qemu-out.sock'),
    String(channels),
    String(defaults.mib),
  ]);
  try {
    await new Promise((r) => gen.once('message', r));
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
    const t0 = process.hrtime.bigint();
    gen.send('go');
    const result = await new Promise<{ bytes: number }>((r) =>
      gen.once('message', (m) => r(m as { bytes: number })),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = { dst: await dst.stats(), src: await src.stats() };
    await tunnel.close();
    const gib = result.bytes / 2 ** 30;
    return {
      gbps: (result.bytes * 8) / seconds / 1e9,
      dstCpuPerGiB: cpuSeconds(before.dst, after.dst) / gib,
      srcCpuPerGiB: cpuSeconds(before.src, after.src) / gib,
      faultsPerGiB: (faults(before.src, after.src) + faults(before.dst, after.dst)) / gib,
      load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] ?? '',
    };
  } finally {
    gen.kill();
    await src.close();
    await dst.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '1024' },
      channels: { type: 'string', default: '4' },
      workers: { type: 'string', default: '2' },
      runs: { type: 'string', default: '2' },
      variant: { type: 'string', multiple: true, default: [] },
    },
  });
  const defaults = {
    mib: Number(values.mib),
    channels: Number(values.channels),
    workers: Number(values.workers),
  };
  const runs = Number(values.runs);
  const variants = values.variant.map((v) => JSON.parse(v) as Variant);
  if (variants.length === 0) variants.push({ label: 'default' });
  const pki = await createTestPki();
  const ids = { a: await pki.issue('agent-a'), b: await pki.issue('agent-b') };
  const rows: Record<string, string[]> = {};
  try {
    for (let r = 0; r < runs; r++) {
      for (const v of variants) {
        const m = await runOnce(v, defaults, pki, ids);
        const line = `${m.gbps.toFixed(2)} Gbit/s  dst ${m.dstCpuPerGiB.toFixed(2)}  src ${m.srcCpuPerGiB.toFixed(2)} cpu-s/GiB  ${Math.round(m.faultsPerGiB)} faults/GiB  (load ${m.load})`;
        (rows[v.label] ??= []).push(line);
        process.stdout.write(`${v.label.padEnd(28)} ${line}\n`);
      }
    }
  } finally {
    pki.dispose();
  }
}

if (process.argv[2] === 'loadgen') loadgen();
else await main();
