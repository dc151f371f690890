// The block migration mechanism between two plain QEMUs (no agents): the
// destination exports its new image from its NBD server, the source mirrors its
// disk into it (write-blocking) while the Linux guest keeps writing, RAM
// migration pauses before the switch-over, the mirror is ended there, and the
// guest goes on with every block OK on the destination.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  DiskMirrors,
  NbdExports,
  createImage,
  imageInfo,
  type DiskSample,
  type NbdAddress,
  type NbdClientTls,
} from '../../src/block/index.js';
import { MigrationError, QmpCommandError } from '../../src/errors.js';
import {
  GuestSerialParser,
  assessGuestHealth,
  checkLinuxGuest,
  linuxGuestAppend,
  linuxGuestFiles,
  linuxGuestRamMiB,
  type GuestHeartbeatEvent,
} from '../../src/guest/index.js';
import {
  initCa,
  issueCertificate,
  loadTlsIdentity,
  qemuTlsCredsObject,
  writeQemuTlsCredsDir,
} from '../../src/pki/index.js';
import {
  DEFAULT_QEMU_BINARY,
  QemuVm,
  followFile,
  runFiles,
  type FileFollower,
} from '../../src/qemu/index.js';
import { waitFor } from './helpers.js';

const MiB = 1024 * 1024;
const GUEST_MEM_MIB = 32;
const DISK_NODE = 'vmf-drive0';

interface Listening {
  exports: NbdExports;
  target: NbdAddress;
  clientTls?: NbdClientTls;
  ramUri: string;
}

const haveQemu = spawnSync(DEFAULT_QEMU_BINARY, ['--version'], { stdio: 'ignore' }).status === 0;

/** One QEMU running (or receiving) the Linux guest with one qcow2 data disk, its heartbeats parsed. */
class GuestVm {
  readonly heartbeats: GuestHeartbeatEvent[] = [];
  vm!: QemuVm;
  private follower: FileFollower | undefined;

  constructor(
    readonly runDir: string,
    readonly image: string,
  ) {}

  async start(o: { incoming: boolean; diskDirtyBlocksPerSec: number }): Promise<this> {
    mkdirSync(this.runDir, { recursive: true });
    const files = runFiles(this.runDir);
    const guest = linuxGuestFiles();
    const append = linuxGuestAppend({
      memMiB: GUEST_MEM_MIB,
      dirtyMiBps: 4,
      verifyMiBps: 32,
      disk: '/dev/vda',
      diskMiB: 64,
      diskDirtyBlocksPerSec: o.diskDirtyBlocksPerSec,
      diskVerifyBlocksPerSec: 1024,
    });
    const parser = new GuestSerialParser();
    this.follower = followFile(
      files.serialLog,
      (text) => {
        for (const e of parser.push(text)) if (e.kind === 'heartbeat') this.heartbeats.push(e);
      },
      { intervalMs: 100 },
    );
    this.vm = await QemuVm.start('guest', this.runDir, DEFAULT_QEMU_BINARY, [
      ...['-nodefaults', '-no-user-config', '-accel', 'tcg', '-machine', 'pc', '-display', 'none'],
      ...['-m', `${linuxGuestRamMiB(GUEST_MEM_MIB)}M`, '-no-reboot'],
      ...['-kernel', guest.kernel, '-initrd', guest.initrd, '-append', append],
      ...['-blockdev', `driver=file,node-name=${DISK_NODE}-file,filename=${this.image}`],
      ...['-blockdev', `driver=qcow2,node-name=${DISK_NODE},file=${DISK_NODE}-file`],
      ...['-device', `virtio-blk-pci,drive=${DISK_NODE},id=vmf-disk0`],
      ...['-chardev', `file,id=serial0,path=${files.serialLog}`, '-serial', 'chardev:serial0'],
      ...['-chardev', `socket,id=qmp0,path=${files.qmpSocket},server=on,wait=off`],
      ...['-mon', 'chardev=qmp0,mode=control'],
      // A destination stays paused after the migration until the test has looked at its image.
      ...(o.incoming ? ['-incoming', 'defer', '-S'] : []),
    ]);
    return this;
  }

  /** Waits for `count` heartbeats in a row from now on with RAM and disk OK and the disk being written. */
  async waitHealthy(what: string, count = 3, timeoutMs = 90_000): Promise<GuestHeartbeatEvent[]> {
    const from = this.heartbeats.length;
    return waitFor(
      `${what} (last heartbeat: ${JSON.stringify(this.heartbeats.at(-1))})`,
      () => {
        const seen = this.heartbeats.slice(from);
        const bad = seen.find((h) => h.status !== 'ok' || h.disk?.status !== 'ok');
        if (bad !== undefined) throw new Error(`guest unhealthy: ${JSON.stringify(bad)}`);
        return seen.length >= count ? seen.slice(-count) : undefined;
      },
      timeoutMs,
    );
  }

  /** The file the guest's disk node reads and writes now. */
  async diskFile(): Promise<string> {
    const nodes = await this.vm.qmp.execute<{ 'node-name': string; file: string }[]>(
      'query-named-block-nodes',
      {
        flat: true,
      },
    );
    return nodes.find((n) => n['node-name'] === `${DISK_NODE}-file`)?.file ?? 'none';
  }

  async stop(): Promise<void> {
    this.follower?.stop();
    if (this.vm?.alive === true) {
      await this.vm.qmp.execute('stop').catch(() => undefined);
      await this.vm.stop(5000);
    }
  }
}

async function migrationStatus(vm: QemuVm, wanted: string[], timeoutMs = 120_000): Promise<string> {
  return waitFor(
    `migration status ${wanted.join(' or ')}`,
    async () => {
      const info = await vm.qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
      if (info.status === 'failed') throw new Error(`migration failed: ${info['error-desc'] ?? '?'}`);
      return wanted.includes(info.status ?? '') ? info.status : undefined;
    },
    timeoutMs,
  );
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** qemu-img compare of two image chains (read beside the QEMUs holding them: -U). */
function compareImages(a: string, b: string): { status: number | null; output: string } {
  const r = spawnSync('qemu-img', ['compare', '-U', a, b], { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

const increasing = (beats: GuestHeartbeatEvent[], value: (h: GuestHeartbeatEvent) => number): boolean =>
  beats.every((h, i) => i === 0 || value(h) > value(beats[i - 1]!));

describe(
  'block migration between two QEMUs over NBD (TCG, Linux guest writing its disk)',
  { skip: haveQemu ? false : `${DEFAULT_QEMU_BINARY} not installed` },
  () => {
    let dir: string;
    const running: GuestVm[] = [];

    before(async () => {
      checkLinuxGuest();
      dir = mkdtempSync(join(tmpdir(), 'vmf-block-mirror-e2e-'));
      await initCa(join(dir, 'ca'));
      for (const name of ['host-a', 'host-b', 'host-c']) {
        const issued = await issueCertificate(join(dir, 'ca'), { name, role: 'host', ips: ['127.0.0.1'] });
        await writeQemuTlsCredsDir(join(dir, `tls-${name}`), await loadTlsIdentity(issued.dir));
      }
    });

    after(async () => {
      await Promise.all(running.map((g) => g.stop()));
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    function vm(name: string, image: string): GuestVm {
      const g = new GuestVm(join(dir, name), image);
      running.push(g);
      return g;
    }

    /** The destination listens for RAM (unix socket) and for the disk (unix or TLS on loopback); with TLS its QEMU admits host-a only. */
    async function listen(destination: GuestVm, name: string, nbd: 'unix' | 'tls'): Promise<Listening> {
      const qmp = destination.vm.qmp;
      await qmp.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'events', state: true }],
      });
      const ramUri = `unix:${join(dir, `${name}-ram.sock`)}`;
      await qmp.execute('migrate-incoming', { uri: ramUri });
      if (nbd === 'unix') {
        const target: NbdAddress = { type: 'unix', path: join(dir, `${name}-nbd.sock`) };
        const exports = await NbdExports.start(qmp, {
          listen: target,
          disks: [{ nodeName: DISK_NODE, exportName: 'disk0' }],
        });
        return { exports, target, ramUri };
      }
      await qmp.execute('object-add', qemuTlsCredsObject('tls-in', join(dir, 'tls-host-b'), 'server'));
      const target: NbdAddress = { type: 'inet', host: '127.0.0.1', port: await freePort() };
      const exports = await NbdExports.start(qmp, {
        listen: target,
        disks: [{ nodeName: DISK_NODE, exportName: 'disk0' }],
        tls: { credsId: 'tls-in', clientCommonName: 'host-a', authzId: 'nbd-authz' },
      });
      return { exports, target, ramUri, clientTls: { credsId: 'tls-out', hostname: 'host-b' } };
    }

    /** Mirrors until every disk is ready, then migrates RAM, ending the mirror at the pre-switchover pause. */
    async function blockMigrate(
      source: GuestVm,
      destination: GuestVm,
      o: { name: string; nbd: 'unix' | 'tls'; sync: 'full' | 'top' },
      listening?: Listening,
    ): Promise<{ samples: DiskSample[][]; exports: NbdExports }> {
      const { exports, target, ramUri, clientTls } = listening ?? (await listen(destination, o.name, o.nbd));
      if (clientTls !== undefined) {
        await source.vm.qmp.execute(
          'object-add',
          qemuTlsCredsObject('tls-out', join(dir, 'tls-host-a'), 'client'),
        );
      }
      const mirrors = await DiskMirrors.start(source.vm.qmp, {
        prefix: 'vmf-m',
        target,
        tls: clientTls,
        disks: [{ disk: 0, nodeName: DISK_NODE, exportName: 'disk0', sync: o.sync }],
        speed: 0,
      });
      const samples: DiskSample[][] = [];
      await waitFor(
        'every mirror ready',
        async () => {
          samples.push(await mirrors.progress());
          return samples.at(-1)!.every((s) => s.ready) ? true : undefined;
        },
        180_000,
      );
      // The guest keeps writing while both copies stay in step.
      await source.waitHealthy('the source guest writing with its disk mirrored', 2);
      samples.push(await mirrors.progress());
      const qmp = source.vm.qmp;
      await qmp.execute('migrate-set-capabilities', {
        capabilities: [
          { capability: 'events', state: true },
          { capability: 'pause-before-switchover', state: true },
        ],
      });
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 1 << 30 });
      await qmp.execute('migrate', { uri: ramUri });
      await migrationStatus(source.vm, ['pre-switchover']);
      await mirrors.complete();
      await qmp.execute('migrate-continue', { state: 'pre-switchover' });
      await migrationStatus(source.vm, ['completed']);
      await migrationStatus(destination.vm, ['completed']);
      return { samples, exports };
    }

    it('copies a 1 GiB qcow2 over NBD on a unix socket while the guest writes; the guest checks every block OK on the destination', async () => {
      const srcImage = join(dir, 'unix-src.qcow2');
      const dstImage = join(dir, 'unix-dst.qcow2');
      await createImage({ path: srcImage, format: 'qcow2', virtualSize: 1024 * MiB });
      await createImage({ path: dstImage, format: 'qcow2', virtualSize: 1024 * MiB });
      const source = await vm('unix-src', srcImage).start({ incoming: false, diskDirtyBlocksPerSec: 64 });
      await source.waitHealthy('the source guest');
      const destination = await vm('unix-dst', dstImage).start({ incoming: true, diskDirtyBlocksPerSec: 64 });
      const { samples, exports } = await blockMigrate(source, destination, {
        name: 'unix',
        nbd: 'unix',
        sync: 'full',
      });

      const last = samples.at(-1)![0]!;
      assert.equal(last.ready, true);
      assert.ok(last.totalBytes >= 1024 * MiB, `the mirror covered the whole disk: ${JSON.stringify(last)}`);
      assert.equal(await source.diskFile(), srcImage, 'the source never switched to the NBD target');
      assert.deepEqual(await exports.stop(), []);
      const same = compareImages(srcImage, dstImage);
      assert.equal(same.status, 0, same.output);

      await destination.vm.qmp.execute('cont');
      const beats = await destination.waitHealthy('the guest on the destination');
      assert.ok(
        increasing(beats, (h) => h.disk!.written),
        JSON.stringify(beats),
      );
      assert.ok(
        increasing(beats, (h) => h.disk!.verified),
        JSON.stringify(beats),
      );
      const health = assessGuestHealth(destination.heartbeats, { requireWrites: true });
      assert.equal(health.state, 'ok', health.reason);
      assert.deepEqual({ mem: health.parts?.mem, disk: health.parts?.disk }, { mem: 'ok', disk: 'ok' });
      await source.stop();
      await destination.stop();
    });

    it('copies over NBD with QEMU TLS on TCP, admitting only the source certificate (tls-authz)', async () => {
      const srcImage = join(dir, 'tls-src.qcow2');
      const dstImage = join(dir, 'tls-dst.qcow2');
      await createImage({ path: srcImage, format: 'qcow2', virtualSize: 1024 * MiB });
      await createImage({ path: dstImage, format: 'qcow2', virtualSize: 1024 * MiB });
      const source = await vm('tls-src', srcImage).start({ incoming: false, diskDirtyBlocksPerSec: 64 });
      await source.waitHealthy('the source guest');

      const destination = await vm('tls-dst', dstImage).start({ incoming: true, diskDirtyBlocksPerSec: 64 });
      const listening = await listen(destination, 'tls', 'tls');

      // Another host of the same deployment (a certificate from the same CA) is refused by the destination's authz.
      const otherDir = join(dir, 'tls-other');
      mkdirSync(otherDir);
      const other = await QemuVm.start('other', otherDir, DEFAULT_QEMU_BINARY, [
        ...['-nodefaults', '-machine', 'none', '-display', 'none'],
        ...[
          '-object',
          `tls-creds-x509,id=tls-c,dir=${join(dir, 'tls-host-c')},endpoint=client,verify-peer=on`,
        ],
        ...['-chardev', `socket,id=qmp0,path=${runFiles(otherDir).qmpSocket},server=on,wait=off`],
        ...['-mon', 'chardev=qmp0,mode=control'],
      ]);
      try {
        await assert.rejects(
          DiskMirrors.start(other.qmp, {
            prefix: 'x',
            target: listening.target,
            tls: { credsId: 'tls-c', hostname: 'host-b' },
            disks: [{ disk: 0, nodeName: 'none', exportName: 'disk0', sync: 'full' }],
            speed: 0,
          }),
          (err: unknown) => err instanceof QmpCommandError && err.command === 'blockdev-add',
        );
      } finally {
        await other.stop();
      }

      const { exports } = await blockMigrate(
        source,
        destination,
        { name: 'tls', nbd: 'tls', sync: 'full' },
        listening,
      );
      assert.equal(await source.diskFile(), srcImage);
      assert.deepEqual(await exports.stop(), []);
      const same = compareImages(srcImage, dstImage);
      assert.equal(same.status, 0, same.output);
      await destination.vm.qmp.execute('cont');
      await destination.waitHealthy('the guest on the destination');
      assert.equal(assessGuestHealth(destination.heartbeats, { requireWrites: true }).state, 'ok');
      await source.stop();
      await destination.stop();
    });

    it('copies only the top layer when the destination has the same backing image', async () => {
      const base = join(dir, 'base.qcow2');
      await createImage({ path: base, format: 'qcow2', virtualSize: 1024 * MiB });
      // 256 MiB of data in the base, away from the 64 MiB the guest writes.
      execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 256M 256M', base], { stdio: 'ignore' });
      mkdirSync(join(dir, 'inc-dst'), { recursive: true });
      const dstBase = join(dir, 'inc-dst', 'base.qcow2');
      execFileSync('cp', [base, dstBase]);
      const srcImage = join(dir, 'inc-src.qcow2');
      const dstImage = join(dir, 'inc-dst', 'top.qcow2');
      await createImage({
        path: srcImage,
        format: 'qcow2',
        virtualSize: 1024 * MiB,
        backing: { name: base, format: 'qcow2' },
      });
      await createImage({
        path: dstImage,
        format: 'qcow2',
        virtualSize: 1024 * MiB,
        backing: { name: 'base.qcow2', format: 'qcow2' },
      });
      assert.equal((await imageInfo(dstImage)).backing?.path, dstBase);
      const source = await vm('inc-src', srcImage).start({ incoming: false, diskDirtyBlocksPerSec: 64 });
      await source.waitHealthy('the source guest');
      const destination = await vm('inc-dst-vm', dstImage).start({
        incoming: true,
        diskDirtyBlocksPerSec: 64,
      });
      const { samples, exports } = await blockMigrate(source, destination, {
        name: 'inc',
        nbd: 'unix',
        sync: 'top',
      });
      const copied = samples.at(-1)![0]!.totalBytes;
      assert.ok(
        copied < 128 * MiB,
        `copied ${copied} bytes: the top layer only, not the 256 MiB of the base`,
      );
      assert.ok(copied >= 64 * MiB, `copied ${copied} bytes: at least what the guest wrote`);
      assert.deepEqual(await exports.stop(), []);
      const same = compareImages(srcImage, dstImage);
      assert.equal(same.status, 0, `the whole chains are identical: ${same.output}`);
      await destination.vm.qmp.execute('cont');
      await destination.waitHealthy('the guest on the destination');
      assert.equal(assessGuestHealth(destination.heartbeats, { requireWrites: true }).state, 'ok');
      await source.stop();
      await destination.stop();
    });

    it('a copy failing midway (destination killed) is cancelled: the source runs on, its image unchanged', async () => {
      const srcImage = join(dir, 'fail-src.qcow2');
      const dstImage = join(dir, 'fail-dst.qcow2');
      await createImage({ path: srcImage, format: 'qcow2', virtualSize: 1024 * MiB });
      await createImage({ path: dstImage, format: 'qcow2', virtualSize: 1024 * MiB });
      // The guest only reads after writing its 64 MiB once: the image must not change at all.
      const source = await vm('fail-src', srcImage).start({ incoming: false, diskDirtyBlocksPerSec: 0 });
      await source.waitHealthy('the source guest');
      await source.vm.qmp.execute('stop');
      const before = sha256(srcImage);
      await source.vm.qmp.execute('cont');
      const destination = await vm('fail-dst', dstImage).start({ incoming: true, diskDirtyBlocksPerSec: 0 });
      const { target } = await listen(destination, 'fail', 'unix');
      const mirrors = await DiskMirrors.start(source.vm.qmp, {
        prefix: 'vmf-f',
        target,
        disks: [{ disk: 0, nodeName: DISK_NODE, exportName: 'disk0', sync: 'full' }],
        speed: 4 * MiB,
      });
      await waitFor('some of the disk copied', async () =>
        ((await mirrors.progress())[0]?.transferredBytes ?? 0) > 8 * MiB ? true : undefined,
      );
      destination.vm.kill('SIGKILL');
      const stopped = await waitFor('the copy to fail', async () => {
        try {
          await mirrors.progress();
          return undefined;
        } catch (err) {
          return err;
        }
      });
      assert.ok(stopped instanceof MigrationError, String(stopped));
      assert.match(stopped.message, /^the copy of disk 0 stopped: /);
      assert.deepEqual(await mirrors.cancel(), []);
      assert.deepEqual(await source.vm.qmp.execute('query-block-jobs'), []);
      assert.equal(await source.diskFile(), srcImage);
      await source.waitHealthy('the source guest after the failed copy');
      assert.equal(assessGuestHealth(source.heartbeats).state, 'ok');
      await source.vm.qmp.execute('stop');
      assert.equal(sha256(srcImage), before, 'the source image is unchanged');
      await source.stop();
    });
  },
);

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}
