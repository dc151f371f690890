import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  GuestSerialParser,
  LINUX_GUEST_BLOCK_MAGIC,
  LINUX_GUEST_BLOCK_SIZE,
  assessGuestHealth,
  checkLinuxGuest,
  linuxGuestAppend,
  linuxGuestBlockContent,
  linuxGuestFiles,
  linuxGuestRamMiB,
  writeLinuxGuestBootDisk,
  type GuestHeartbeatEvent,
  type LinuxGuestWorkload,
} from '../../src/guest/index.js';
import { canUseNetns, labTag, removeNetns } from '../../src/lab/index.js';
import {
  DEFAULT_QEMU_BINARY,
  QemuVm,
  followFile,
  runFiles,
  type FileFollower,
} from '../../src/qemu/index.js';
import { waitFor } from './helpers.js';

const BRIDGE_ADDRESS = '198.18.70.1';
const DATA_DISK_MIB = 8;
const MEM_MIB = 64;

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr}`);
}

/** How the VM boots: Linux by -kernel/-initrd, or SeaBIOS from its first disk. */
type Boot = { kernel: string; initrd: string; append: string } | 'disk0';

/** The QEMU argv for one Linux guest VM on the namespace's bridge (built here, not by src/qemu's VM spec). */
function linuxGuestArgv(o: {
  name: string;
  runDir: string;
  boot: Boot;
  disks: string[];
  tap: string;
  mac: string;
  /** Guest RAM in a shared file: its offsets are guest-physical addresses. */
  memFile?: string;
}): string[] {
  const files = runFiles(o.runDir);
  const ram = linuxGuestRamMiB(MEM_MIB);
  const argv = ['-name', o.name, '-nodefaults', '-no-user-config', '-accel', 'tcg', '-m', `${ram}M`];
  if (o.memFile !== undefined) {
    argv.push(
      '-machine',
      'pc,memory-backend=m0',
      '-object',
      `memory-backend-file,id=m0,size=${ram}M,mem-path=${o.memFile},share=on`,
    );
  } else {
    argv.push('-machine', 'pc');
  }
  if (o.boot !== 'disk0')
    argv.push('-kernel', o.boot.kernel, '-initrd', o.boot.initrd, '-append', o.boot.append);
  for (const [i, disk] of o.disks.entries()) {
    argv.push(
      '-drive',
      `file=${disk},format=raw,if=none,id=disk${i}`,
      '-device',
      `virtio-blk-pci,drive=disk${i}${o.boot === 'disk0' && i === 0 ? ',bootindex=0' : ''}`,
    );
  }
  argv.push(
    '-netdev',
    `tap,id=net0,ifname=${o.tap},script=no,downscript=no`,
    '-device',
    `virtio-net-pci,netdev=net0,mac=${o.mac}`,
    '-chardev',
    `file,id=serial0,path=${files.serialLog}`,
    '-serial',
    'chardev:serial0',
    '-chardev',
    `socket,id=qmp0,path=${files.qmpSocket},server=on,wait=off`,
    '-mon',
    'chardev=qmp0,mode=control',
    '-display',
    'none',
    '-no-reboot',
  );
  return argv;
}

/** A Linux guest in QEMU inside the namespace, its serial output parsed as it arrives. */
class LinuxGuestUnderTest {
  readonly heartbeats: GuestHeartbeatEvent[] = [];
  /** guest page -> guest-physical address, from its `vmferry-guest phys` lines. */
  readonly phys = new Map<number, number>();
  readonly lines: string[] = [];
  vm: QemuVm | undefined;
  startedAt = 0;
  firstHeartbeatMs: number | undefined;
  private follower: FileFollower | undefined;

  constructor(
    readonly name: string,
    readonly runDir: string,
  ) {}

  async start(netns: string, argv: string[]): Promise<this> {
    mkdirSync(this.runDir, { recursive: true });
    const parser = new GuestSerialParser();
    this.follower = followFile(
      runFiles(this.runDir).serialLog,
      (text) => {
        for (const e of parser.push(text)) {
          if (e.kind === 'heartbeat') {
            this.firstHeartbeatMs ??= Date.now() - this.startedAt;
            this.heartbeats.push(e);
          } else if (e.kind === 'message') {
            this.lines.push(e.text);
            const m = /^vmferry-guest phys page=(\d+) addr=0x([0-9a-f]+)$/.exec(e.text);
            if (m) this.phys.set(Number(m[1]), parseInt(m[2] ?? '', 16));
          }
        }
      },
      { intervalMs: 100 },
    );
    this.startedAt = Date.now();
    // `ip netns exec` execs QEMU: the pid QemuVm watches is QEMU's.
    this.vm = await QemuVm.start(this.name, this.runDir, 'ip', [
      'netns',
      'exec',
      netns,
      DEFAULT_QEMU_BINARY,
      ...argv,
    ]);
    return this;
  }

  /** Waits for `count` heartbeats from now on that satisfy `ok`, in a row; fails on any other after the first. */
  async waitHeartbeats(
    what: string,
    count: number,
    ok: (h: GuestHeartbeatEvent) => boolean,
    timeoutMs = 60_000,
  ): Promise<GuestHeartbeatEvent[]> {
    const from = this.heartbeats.length;
    return waitFor(
      `${what} from ${this.name} (last: ${this.lastLine()})`,
      () => {
        const seen = this.heartbeats.slice(from);
        let run = 0;
        for (let i = seen.length - 1; i >= 0 && ok(seen[i]!); i--) run++;
        return run >= count ? seen.slice(-count) : undefined;
      },
      timeoutMs,
    );
  }

  lastLine(): string {
    const h = this.heartbeats.at(-1);
    return h ? JSON.stringify(h) : (this.lines.at(-1) ?? 'nothing yet');
  }

  async stop(): Promise<void> {
    this.follower?.stop();
    if (this.vm?.alive === true) {
      // Paused first: QEMU finishes the guest's disk writes before it quits.
      await this.vm.qmp.execute('stop').catch(() => undefined);
      await this.vm.stop(5000);
    }
  }
}

const allOk = (h: GuestHeartbeatEvent): boolean =>
  h.status === 'ok' && h.mem === 'ok' && h.disk?.status === 'ok' && h.net === 'ok';

function increasing(beats: GuestHeartbeatEvent[], value: (h: GuestHeartbeatEvent) => number): boolean {
  return beats.every((h, i) => i === 0 || value(h) > value(beats[i - 1]!));
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function patchFile(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

function report(t: TestContext, g: LinuxGuestUnderTest, how: string): void {
  t.diagnostic(
    `${how}: first heartbeat ${g.firstHeartbeatMs ?? '?'} ms after QEMU started (TCG, ${linuxGuestRamMiB(MEM_MIB)} MiB)`,
  );
}

describe(
  'the Linux guest under real QEMU (TCG)',
  { skip: canUseNetns() ? false : 'needs root: its NIC sits on a bridge in a network namespace' },
  () => {
    let dir: string;
    let netns: string;
    const guests: LinuxGuestUnderTest[] = [];

    before(() => {
      checkLinuxGuest();
      dir = mkdtempSync(join(tmpdir(), 'vmf-linux-guest-e2e-'));
      netns = `vmg${labTag()}`;
      removeNetns(netns);
      ip(['netns', 'add', netns]);
      ip(['-n', netns, 'link', 'set', 'lo', 'up']);
      ip(['-n', netns, 'link', 'add', 'br0', 'type', 'bridge']);
      ip(['-n', netns, 'addr', 'add', `${BRIDGE_ADDRESS}/24`, 'dev', 'br0']);
      ip(['-n', netns, 'link', 'set', 'br0', 'up']);
      for (const tap of ['tap0', 'tap1']) {
        ip(['-n', netns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
        ip(['-n', netns, 'link', 'set', tap, 'master', 'br0']);
        ip(['-n', netns, 'link', 'set', tap, 'up']);
      }
    });

    after(async () => {
      await Promise.all(guests.map((g) => g.stop()));
      if (netns !== undefined) removeNetns(netns);
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    function dataDisk(name: string): string {
      const path = join(dir, `${name}.raw`);
      writeFileSync(path, '');
      truncateSync(path, DATA_DISK_MIB << 20);
      return path;
    }

    it('boots by -kernel/-initrd: memory, disk and network check OK while rewriting; the disk, RAM and network checks fail when they should', async (t) => {
      const files = linuxGuestFiles();
      const disk = dataDisk('kernel-boot');
      const memFile = join('/dev/shm', `vmf-linux-guest-${labTag()}-${process.pid}.ram`);
      const workload: LinuxGuestWorkload = {
        memMiB: MEM_MIB,
        dirtyMiBps: 8,
        verifyMiBps: 64,
        disk: '/dev/vda',
        diskDirtyBlocksPerSec: 16,
        diskVerifyBlocksPerSec: 1024,
        ip: '198.18.70.2/24',
        peer: BRIDGE_ADDRESS,
      };
      const g = new LinuxGuestUnderTest('kernel-boot', join(dir, 'kernel-boot'));
      guests.push(g);
      try {
        await g.start(
          netns,
          linuxGuestArgv({
            name: g.name,
            runDir: g.runDir,
            boot: { kernel: files.kernel, initrd: files.initrd, append: linuxGuestAppend(workload) },
            disks: [disk],
            tap: 'tap0',
            mac: '52:54:00:46:00:02',
            memFile,
          }),
        );
        const ok = await g.waitHeartbeats('3 heartbeats with mem, disk and net OK', 3, allOk);
        report(t, g, '-kernel/-initrd');
        assert.ok(increasing(ok, (h) => h.seq) && increasing(ok, (h) => h.verified), JSON.stringify(ok));
        assert.ok(
          increasing(ok, (h) => h.written),
          `memory pages rewritten: ${JSON.stringify(ok)}`,
        );
        assert.ok(
          increasing(ok, (h) => h.disk!.written) && increasing(ok, (h) => h.disk!.verified),
          `disk blocks rewritten and read back: ${JSON.stringify(ok)}`,
        );
        const health = assessGuestHealth(g.heartbeats, { requireWrites: true });
        assert.equal(health.state, 'ok', health.reason);
        // Each complete pass of the disk check reads every block of the disk once.
        const last = g.heartbeats.at(-1)!;
        const diskBlocks = (DATA_DISK_MIB << 20) / 4096;
        assert.deepEqual(health.parts, {
          mem: 'ok',
          disk: 'ok',
          diskPasses: Math.floor(last.disk!.verified / diskBlocks),
          net: 'ok',
        });

        // The bridge's address goes away: no ping reply, net=DOWN; it comes back: net=OK again.
        ip(['-n', netns, 'addr', 'del', `${BRIDGE_ADDRESS}/24`, 'dev', 'br0']);
        await g.waitHeartbeats('net=DOWN', 1, (h) => h.net === 'down' && h.status === 'ok');
        const down = assessGuestHealth(g.heartbeats);
        assert.equal(down.state, 'stalled');
        assert.match(down.reason, /net DOWN/);
        ip(['-n', netns, 'addr', 'add', `${BRIDGE_ADDRESS}/24`, 'dev', 'br0']);
        await g.waitHeartbeats('net=OK again', 2, allOk);

        // Blocks changed behind the guest's back, in the image file at block * 4096.
        const blocks = [100, 700, 1300, 1900];
        for (const b of blocks)
          patchFile(disk, b * LINUX_GUEST_BLOCK_SIZE + 2000, Buffer.from('vmferry-corrupt'));
        const [diskBad] = await g.waitHeartbeats('disk=CORRUPT', 1, (h) => h.disk?.status === 'corrupt');
        assert.equal(diskBad!.status, 'corrupt');
        assert.equal(diskBad!.mem, 'ok');
        assert.ok(blocks.includes(diskBad!.disk!.corruptBlock!), JSON.stringify(diskBad));
        const verdict = assessGuestHealth(g.heartbeats);
        assert.equal(verdict.state, 'corrupt');
        assert.equal(verdict.corruptBlock, diskBad!.disk!.corruptBlock);
        assert.match(verdict.reason, new RegExp(`disk block ${diskBad!.disk!.corruptBlock} corrupt`));
        assert.ok(
          g.lines.some((l) => l.startsWith(`vmferry-guest mismatch block=${diskBad!.disk!.corruptBlock} `)),
          g.lines.join('\n'),
        );

        // RAM pages changed from outside at the guest-physical addresses the guest printed.
        assert.equal(g.phys.size, 8, g.lines.join('\n'));
        for (const [, addr] of g.phys) patchFile(memFile, addr + 3000, Buffer.from([0xde, 0xad, 0xbe, 0xef]));
        const [memBad] = await g.waitHeartbeats('mem=CORRUPT', 1, (h) => h.mem === 'corrupt');
        assert.ok(g.phys.has(memBad!.corruptPage!), JSON.stringify(memBad));
        assert.equal(memBad!.disk?.status, 'corrupt', 'a corruption is never forgotten');
      } finally {
        await g.stop();
        rmSync(memFile, { force: true });
      }
    });

    it('boots from its disk through SeaBIOS and syslinux, checks its second disk, and writes blocks as documented', async (t) => {
      const boot = join(dir, 'bios-boot.img');
      const workload: LinuxGuestWorkload = {
        memMiB: MEM_MIB,
        dirtyMiBps: 8,
        verifyMiBps: 64,
        disk: '/dev/vdb',
        diskDirtyBlocksPerSec: 32,
        ip: '198.18.70.3/24',
        peer: BRIDGE_ADDRESS,
      };
      writeLinuxGuestBootDisk(boot, linuxGuestAppend(workload));
      const bootHash = sha256(boot);
      const disk = dataDisk('bios-boot');
      const g = new LinuxGuestUnderTest('bios-boot', join(dir, 'bios-boot'));
      guests.push(g);
      await g.start(
        netns,
        linuxGuestArgv({
          name: g.name,
          runDir: g.runDir,
          boot: 'disk0',
          disks: [boot, disk],
          tap: 'tap1',
          mac: '52:54:00:46:00:03',
        }),
      );
      const ok = await g.waitHeartbeats('3 heartbeats with mem, disk and net OK', 3, allOk, 90_000);
      report(t, g, 'SeaBIOS from disk 0');
      assert.ok(
        increasing(ok, (h) => h.disk!.verified),
        JSON.stringify(ok),
      );
      const bootLine = g.lines.find((l) => l.startsWith('vmferry-guest boot '));
      assert.match(bootLine ?? '', /BOOT_IMAGE=\/vmlinuz .*vmf\.disk=\/dev\/vdb .*vmf\.peer=198\.18\.70\.1/);
      await g.stop();

      assert.equal(sha256(boot), bootHash, 'the boot disk is not written to');
      // Every block holds its header and the pattern of its generation; some were rewritten.
      const image = readFileSync(disk);
      const blockCount = (DATA_DISK_MIB << 20) / LINUX_GUEST_BLOCK_SIZE;
      let generations = 0;
      for (let b = 0; b < blockCount; b++) {
        const block = image.subarray(b * LINUX_GUEST_BLOCK_SIZE, (b + 1) * LINUX_GUEST_BLOCK_SIZE);
        assert.equal(block.readUInt32LE(0), LINUX_GUEST_BLOCK_MAGIC, `block ${b} magic`);
        assert.equal(block.readUInt32LE(4), b, `block ${b} number`);
        const generation = block.readUInt32LE(8);
        assert.ok(
          block.equals(linuxGuestBlockContent(b, generation)),
          `block ${b} at generation ${generation}`,
        );
        generations += generation;
      }
      const written = g.heartbeats.at(-1)!.disk!.written;
      assert.ok(written > 0 && generations >= written, `generations ${generations}, disk_written ${written}`);
    });
  },
);
