/**
 * What one TLS 1.3 connection costs in Node per GiB, for each cipher suite:
 * a sender process and a receiver process on loopback, CPU seconds of each
 * per GiB (min and median over the runs, alternating suites so background
 * load hits all alike). This is the cost floor of one tunnel connection's
 * encryption and decryption, before any relaying.
 *
 *   node dist/bench/tunnel-ciphers.js [--mib 1024] [--runs 5] [--block 65536]
 */
import { fork } from 'node:child_process';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTestPki } from '../src/pki/index.js';
import { median } from './report.js';

const SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function receiver(): void {
  const id = JSON.parse(process.env.VMF_BENCH_ID ?? '{}') as { ca: string; cert: string; key: string };
  const server = createTlsServer({
    ...id,
    requestCert: true,
    minVersion: 'TLSv1.3',
    ciphers: SUITES.join(':'),
  });
  server.on('secureConnection', (socket) => {
    const cpu0 = cpuSeconds();
    let bytes = 0;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.on('end', () => {
      process.send?.({ bytes, cpu: cpuSeconds() - cpu0, suite: socket.getCipher().standardName });
      socket.end();
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send?.({ port: typeof address === 'object' && address !== null ? address.port : 0 });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '1024' },
      runs: { type: 'string', default: '5' },
      block: { type: 'string', default: '65536' },
    },
  });
  const mib = Number(values.mib);
  const runs = Number(values.runs);
  const blockSize = Number(values.block);
  const pki = await createTestPki();
  const id = await pki.issue('bench');
  const pem = { ca: id.ca.toString(), cert: id.cert.toString(), key: id.key.toString() };
  const child = fork(fileURLToPath(import.meta.url), ['receiver'], {
    env: { ...process.env, VMF_BENCH_ID: JSON.stringify(pem) },
  });
  const port = await new Promise<number>((resolve) =>
    child.once('message', (m) => resolve((m as { port: number }).port)),
  );
  const rows = new Map<string, { send: number[]; receive: number[]; gbps: number[] }>();
  const block = Buffer.alloc(blockSize, 0x5a);
  try {
    for (let r = 0; r < runs; r++) {
      for (const suite of SUITES) {
        const result = new Promise<{ bytes: number; cpu: number; suite: string }>((resolve) =>
          child.once('message', (m) => resolve(m as { bytes: number; cpu: number; suite: string })),
        );
        const socket = tlsConnect({
          host: '127.0.0.1',
          port,
          ...pem,
          ciphers: suite,
          minVersion: 'TLSv1.3',
          checkServerIdentity: () => undefined,
        });
        await new Promise<void>((resolve) => socket.once('secureConnect', resolve));
        const cpu0 = cpuSeconds();
        const t0 = process.hrtime.bigint();
        let sent = 0;
        await new Promise<void>((resolve) => {
          const pump = (): void => {
            while (sent < mib * 1024 * 1024) {
              sent += block.length;
              if (!socket.write(block)) {
                socket.once('drain', pump);
                return;
              }
            }
            socket.end(resolve);
          };
          pump();
        });
        const got = await result;
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        const sendCpu = cpuSeconds() - cpu0;
        socket.destroy();
        const gib = got.bytes / 2 ** 30;
        const row = rows.get(suite) ?? { send: [], receive: [], gbps: [] };
        row.send.push(sendCpu / gib);
        row.receive.push(got.cpu / gib);
        row.gbps.push((got.bytes * 8) / seconds / 1e9);
        rows.set(suite, row);
      }
    }
  } finally {
    child.kill();
    pki.dispose();
  }
  process.stdout.write(
    `${mib} MiB per run, ${runs} runs, ${blockSize}-byte writes; CPU s/GiB min/median\n` +
      'suite                            sender       receiver     Gbit/s median\n',
  );
  for (const [suite, row] of rows) {
    process.stdout.write(
      `${suite.padEnd(32)} ${Math.min(...row.send).toFixed(2)}/${median(row.send).toFixed(2)}    ` +
        `${Math.min(...row.receive).toFixed(2)}/${median(row.receive).toFixed(2)}    ${median(row.gbps).toFixed(2)}\n`,
    );
  }
}

if (process.argv[2] === 'receiver') receiver();
else await main();
