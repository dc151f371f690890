// Real QEMU: the credentials vmferry issues load in tls-creds-x509 and carry a
// TLS multifd migration between two QEMU processes.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type TlsIdentity,
  initCa,
  issueCertificate,
  loadTlsIdentity,
  qemuTlsCredsArg,
  writeQemuTlsCredsDir,
} from '../../src/pki/index.js';

const QEMU = 'qemu-system-x86_64';
const haveQemu = spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;

/** Starts QEMU with one tls-creds-x509 object, says hello on QMP and quits; returns exit status and stderr. */
function loadCreds(
  dir: string,
  endpoint: 'server' | 'client',
): Promise<{ status: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU, [
      '-nodefaults',
      '-machine',
      'none',
      '-display',
      'none',
      '-object',
      qemuTlsCredsArg('t0', dir, endpoint),
      '-qmp',
      'stdio',
    ]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr, stdout }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(
      '{"execute":"qmp_capabilities"}\n{"execute":"qom-list","arguments":{"path":"/objects"}}\n{"execute":"quit"}\n',
    );
  });
}

interface Qmp {
  command(execute: string, args?: Record<string, unknown>): Promise<Record<string, unknown>>;
  close(): void;
}

async function qmpConnect(path: string): Promise<Qmp> {
  let socket: net.Socket | undefined;
  for (let i = 0; i < 100 && socket === undefined; i++) {
    socket = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.connect(path, () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket === undefined) await sleep(50);
  }
  if (socket === undefined) throw new Error(`no QMP socket at ${path}`);
  const s = socket;
  const waiting: ((m: Record<string, unknown>) => void)[] = [];
  let buffer = '';
  s.on('data', (d: Buffer) => {
    buffer += d.toString();
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const message = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
      buffer = buffer.slice(nl + 1);
      if ('return' in message || 'error' in message) waiting.shift()?.(message);
    }
  });
  const qmp: Qmp = {
    command: (execute, args) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        s.write(`${JSON.stringify(args === undefined ? { execute } : { execute, arguments: args })}\n`);
      }),
    close: () => s.destroy(),
  };
  await qmp.command('qmp_capabilities');
  return qmp;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe(
  'pki QEMU tls-creds-x509 with real QEMU',
  { skip: haveQemu ? false : `${QEMU} not installed` },
  () => {
    let root: string;
    let hostA: TlsIdentity;
    let hostB: TlsIdentity;
    let foreign: TlsIdentity;
    const children: ChildProcess[] = [];

    before(async () => {
      root = await mkdtemp(join(tmpdir(), 'vmferry-qemu-tls-e2e-'));
      await initCa(join(root, 'ca'));
      await initCa(join(root, 'other-ca'));
      hostA = await loadTlsIdentity(
        (await issueCertificate(join(root, 'ca'), { name: 'host-a', role: 'host' })).dir,
      );
      hostB = await loadTlsIdentity(
        (await issueCertificate(join(root, 'ca'), { name: 'host-b', role: 'host', ips: ['127.0.0.1'] })).dir,
      );
      foreign = await loadTlsIdentity(
        (await issueCertificate(join(root, 'other-ca'), { name: 'host-b', role: 'host' })).dir,
      );
    });

    after(async () => {
      for (const child of children) child.kill('SIGKILL');
      await rm(root, { recursive: true, force: true });
    });

    it('loads our PKCS#8 ECDSA credentials as server and as client', async () => {
      const creds = await writeQemuTlsCredsDir(join(root, 'a'), hostA);
      for (const endpoint of ['server', 'client'] as const) {
        const run = await loadCreds(creds.dir, endpoint);
        assert.equal(run.status, 0, `${endpoint}: ${run.stderr}`);
        assert.match(run.stdout, /"name": "t0", "type": "child<tls-creds-x509>"/);
      }
    });

    it('QEMU itself rejects a certificate not signed by the CA in the directory', async () => {
      const creds = await writeQemuTlsCredsDir(join(root, 'mixed'), { ...foreign, ca: hostA.ca });
      const run = await loadCreds(creds.dir, 'server');
      assert.notEqual(run.status, 0);
      assert.match(run.stderr, /failed validation/);
    });

    it('carries a TLS multifd migration, checking the destination by name', async () => {
      const src = await writeQemuTlsCredsDir(join(root, 'src'), hostA);
      const dst = await writeQemuTlsCredsDir(join(root, 'dst'), hostB);
      const start = async (
        name: string,
        dir: string,
        endpoint: 'server' | 'client',
        extra: string[],
      ): Promise<Qmp> => {
        const socket = join(root, `${name}.qmp`);
        const child = spawn(
          QEMU,
          [
            '-nodefaults',
            '-machine',
            'pc',
            '-accel',
            'tcg',
            '-m',
            '32',
            '-display',
            'none',
            '-S',
            '-object',
            qemuTlsCredsArg('tls0', dir, endpoint),
            '-qmp',
            `unix:${socket},server=on,wait=off`,
            ...extra,
          ],
          { stdio: 'ignore' },
        );
        children.push(child);
        return qmpConnect(socket);
      };
      const migrate = async (tlsHostname: string): Promise<Record<string, unknown>> => {
        const port = await freePort();
        const destination = await start(`dst-${tlsHostname}`, dst.dir, 'server', ['-incoming', 'defer']);
        const source = await start(`src-${tlsHostname}`, src.dir, 'client', []);
        try {
          for (const q of [destination, source]) {
            await q.command('migrate-set-capabilities', {
              capabilities: [{ capability: 'multifd', state: true }],
            });
            await q.command('migrate-set-parameters', { 'tls-creds': 'tls0', 'multifd-channels': 2 });
          }
          await source.command('migrate-set-parameters', { 'tls-hostname': tlsHostname });
          await destination.command('migrate-incoming', { uri: `tcp:127.0.0.1:${port}` });
          await source.command('migrate', { uri: `tcp:127.0.0.1:${port}` });
          for (let i = 0; i < 200; i++) {
            const info = (await source.command('query-migrate')).return as Record<string, unknown>;
            if (info.status === 'completed' || info.status === 'failed') return info;
            await sleep(50);
          }
          throw new Error('migration did not finish in 10 s');
        } finally {
          await source.command('quit').catch(() => undefined);
          await destination.command('quit').catch(() => undefined);
          source.close();
          destination.close();
        }
      };
      const good = await migrate('host-b');
      assert.equal(good.status, 'completed', JSON.stringify(good));
      const bad = await migrate('host-c');
      assert.equal(bad.status, 'failed');
      assert.match(String(bad['error-desc']), /does not match the hostname host-c/);
    });
  },
);
