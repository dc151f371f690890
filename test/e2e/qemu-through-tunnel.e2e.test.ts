/**
 * Real QEMU migrations through the tunnelled transport: two QEMUs, multifd
 * with 4 channels, each channel its own TLS connection through two agents'
 * frontends. The source's RAM is random data from a file, so the check is
 * byte for byte: the destination's guest memory must equal that file.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QemuVm, memoryOnlyArgv } from '../../src/qemu/index.js';
import { createTestPki, type TestPki } from '../../src/pki/index.js';
import { TlsFrontend } from '../../src/transport/index.js';
import { ROUTE_ROLES } from '../../src/agent/index.js';

const QEMU = 'qemu-system-x86_64';
const MEMORY_MIB = 256;
const CHANNELS = 4;
const haveQemu = spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;

interface MigrationStatus {
  status: string;
  'error-desc'?: string;
  ram?: { transferred: number };
}

async function startQemu(dir: string, name: string, memory: string[], extra: string[]): Promise<QemuVm> {
  const runDir = join(dir, name);
  spawnSync('mkdir', ['-p', runDir]);
  return QemuVm.start(
    name,
    runDir,
    QEMU,
    memoryOnlyArgv({ name, runDir, memoryMiB: MEMORY_MIB, memory, extra }),
  );
}

async function waitForMigration(vm: QemuVm, timeoutMs: number): Promise<MigrationStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await vm.qmp.execute<MigrationStatus>('query-migrate');
    if (s.status === 'completed' || s.status === 'failed' || s.status === 'cancelled') return s;
    if (Date.now() > deadline) throw new Error(`migration still ${s.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function prepareMultifd(vm: QemuVm, parameters: Record<string, unknown>): Promise<void> {
  await vm.qmp.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'multifd', state: true }],
  });
  await vm.qmp.execute('migrate-set-parameters', { 'multifd-channels': CHANNELS, ...parameters });
}

describe(
  'QEMU multifd migration through the tunnel',
  { skip: haveQemu ? false : `${QEMU} is not installed` },
  () => {
    let dir: string;
    let pki: TestPki;
    let src: TlsFrontend;
    let dst: TlsFrontend;
    let ramFile: string;
    const vms: QemuVm[] = [];
    const token = randomBytes(24).toString('hex');

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'vmf-qemu-tunnel-'));
      ramFile = join(dir, 'ram.bin');
      spawnSync('sh', ['-c', `head -c ${MEMORY_MIB}M /dev/urandom > ${ramFile}`]);
      pki = await createTestPki();
      const idA = await pki.issue('agent-a');
      const idB = await pki.issue('agent-b');
      dst = await TlsFrontend.start({
        listen: { host: '127.0.0.1', port: 0 },
        tls: idB,
        internalApiPath: join(dir, 'b-api.sock'),
        workers: 2,
        tunnelRoles: ROUTE_ROLES.tunnel,
      });
      src = await TlsFrontend.start({
        localPath: join(dir, 'a-local.sock'),
        tls: idA,
        internalApiPath: join(dir, 'a-api.sock'),
        workers: 2,
        tunnelRoles: ROUTE_ROLES.tunnel,
      });
    });

    after(async () => {
      for (const vm of vms) await vm.stop(3000).catch(() => undefined);
      await src?.close();
      await dst?.close();
      pki?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    async function pair(name: string): Promise<{ source: QemuVm; destination: QemuVm }> {
      const source = await startQemu(
        dir,
        `${name}-src`,
        ['-object', `memory-backend-file,id=m0,size=${MEMORY_MIB}M,mem-path=${ramFile},share=off`],
        [],
      );
      vms.push(source);
      const destination = await startQemu(
        dir,
        `${name}-dst`,
        ['-object', `memory-backend-ram,id=m0,size=${MEMORY_MIB}M`],
        ['-incoming', 'defer'],
      );
      vms.push(destination);
      return { source, destination };
    }

    /**
     * A source and a destination QEMU with multifd, the destination agent expecting the
     * tunnel, and the source migrating into its source tunnel with these parameters.
     */
    async function migrateThroughTunnel(name: string, sourceParameters: Record<string, number>) {
      const { source, destination } = await pair(name);
      const migrationId = `qemu-${name}`;
      const incoming = join(dir, `${name}-incoming.sock`);
      await dst.acceptTunnel({
        migrationId,
        token,
        peerCommonName: 'agent-a',
        targetPath: incoming,
        maxConnections: 1 + CHANNELS,
      });
      await prepareMultifd(destination, {});
      await destination.qmp.execute('migrate-incoming', { uri: `unix:${incoming}` });
      const tunnel = await src.openSourceTunnel({
        migrationId,
        token,
        listenPath: join(dir, `${name}-outgoing.sock`),
        remote: dst.address ?? { host: '', port: 0 },
        expectedPeerCommonName: 'agent-b',
      });
      await prepareMultifd(source, sourceParameters);
      await source.qmp.execute('migrate', { uri: `unix:${tunnel.listenPath}` });
      return { source, destination, migrationId, tunnel };
    }

    it('migrates 256 MiB of random RAM over 4 tunnelled channels, byte for byte', async () => {
      const { source, destination, migrationId, tunnel } = await migrateThroughTunnel('ok', {
        'max-bandwidth': 64 * 1024 * 1024 * 1024,
        'downtime-limit': 2000,
      });
      const done = await waitForMigration(source, 60_000);
      assert.equal(done.status, 'completed', done['error-desc']);
      const arrived = await waitForMigration(destination, 10_000);
      assert.equal(arrived.status, 'completed');

      const sent = await tunnel.close();
      const received = await dst.closeTunnel(migrationId);
      assert.equal(sent.connectionsOpened, 1 + CHANNELS);
      assert.ok(
        sent.bytesFromQemu > MEMORY_MIB * 1024 * 1024,
        `only ${sent.bytesFromQemu} bytes went through`,
      );
      assert.equal(received.bytesToQemu, sent.bytesFromQemu);

      // Guest RAM above the legacy ISA hole is plain RAM on both sides: compare it with the source's file.
      const dump = join(dir, 'dst.mem');
      const from = 1024 * 1024;
      const size = MEMORY_MIB * 1024 * 1024 - from;
      await destination.qmp.execute('pmemsave', { val: from, size, filename: dump });
      const want = createHash('sha256').update(readFileSync(ramFile).subarray(from)).digest('hex');
      const got = createHash('sha256').update(readFileSync(dump)).digest('hex');
      assert.equal(got, want);
    });

    it('fails the migration cleanly, source intact, when the tunnel is torn down midway', async () => {
      // Slow enough (about 8 s for all of it) that the cut lands in the middle.
      const { source, migrationId, tunnel } = await migrateThroughTunnel('cut', {
        'max-bandwidth': 32 * 1024 * 1024,
      });
      await new Promise((r) => setTimeout(r, 1000));
      const live = await tunnel.stats();
      assert.ok(live.bytesFromQemu > 0 && live.connectionsOpen === 1 + CHANNELS);
      const cutAt = Date.now();
      await dst.closeTunnel(migrationId);
      const done = await waitForMigration(source, 15_000);
      assert.equal(done.status, 'failed');
      assert.ok(Date.now() - cutAt < 10_000, `QEMU noticed after ${Date.now() - cutAt} ms`);
      // The source VM is still there, in the state it was in (paused at start), and answers.
      const status = await source.qmp.execute<{ status: string }>('query-status');
      assert.ok(source.alive);
      assert.ok(['paused', 'prelaunch'].includes(status.status), status.status);
      await tunnel.close();
    });
  },
);
