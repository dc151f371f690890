import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  GuestSerialParser,
  guestAppend,
  guestKernelPath,
  guestPageAddress,
  guestRamMiB,
  type GuestHeartbeatEvent,
  type GuestWorkload,
} from '../../src/guest/index.js';
import {
  KVM_SLOWER_FACTOR,
  QemuVm,
  describeTiming,
  followFile,
  runFiles,
  type FileFollower,
  type HostInfo,
  type VmSpec,
} from '../../src/qemu/index.js';
import { runCli, waitFor } from './helpers.js';

function guestBoot(workload: GuestWorkload): VmSpec['boot'] {
  return { kernel: guestKernelPath(), append: guestAppend(workload) };
}

/** A real QEMU running the guest under TCG, with its heartbeats collected as they arrive. */
class GuestUnderTest {
  readonly heartbeats: GuestHeartbeatEvent[] = [];
  private follower: FileFollower | undefined;
  vm: QemuVm | undefined;

  async boot(spec: VmSpec, runDir: string): Promise<this> {
    const parser = new GuestSerialParser();
    this.follower = followFile(
      runFiles(runDir).serialLog,
      (text) => {
        for (const e of parser.push(text)) if (e.kind === 'heartbeat') this.heartbeats.push(e);
      },
      { intervalMs: 100 },
    );
    this.vm = await QemuVm.launch(spec, { accel: 'tcg', runDir });
    return this;
  }

  async waitHeartbeats(
    count: number,
    what = `${count} heartbeats`,
    timeoutMs = 30_000,
  ): Promise<GuestHeartbeatEvent[]> {
    const start = this.heartbeats.length;
    await waitFor(what, () => (this.heartbeats.length - start >= count ? true : undefined), timeoutMs);
    return this.heartbeats.slice(start);
  }

  async stop(): Promise<void> {
    this.follower?.stop();
    await this.vm?.stop(3000);
  }
}

describe('the guest workload under real QEMU (TCG)', () => {
  let dir: string;
  const guests: GuestUnderTest[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmf-guest-e2e-'));
  });
  after(async () => {
    await Promise.all(guests.map((g) => g.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('boots idle (dirty=0), prints OK heartbeats, pauses and resumes over QMP, and quits', async () => {
    const g = new GuestUnderTest();
    guests.push(g);
    const spec: VmSpec = {
      name: 'idle',
      memoryMiB: guestRamMiB(64),
      vcpus: 1,
      machine: 'pc',
      cpu: 'qemu64',
      disks: [],
      nics: [],
      boot: guestBoot({ memMiB: 64, dirtyMiBps: 0 }),
    };
    await g.boot(spec, join(dir, 'idle'));
    const first = await g.waitHeartbeats(3);
    assert.ok(
      first.every((h) => h.status === 'ok'),
      JSON.stringify(first),
    );
    assert.ok(first[2]!.seq > first[0]!.seq && first[2]!.verified > first[0]!.verified);

    const qmp = g.vm!.qmp;
    await qmp.execute('stop');
    assert.equal((await qmp.execute<{ status: string }>('query-status')).status, 'paused');
    await sleep(500);
    const pausedAt = g.heartbeats.length;
    await sleep(2500);
    assert.equal(g.heartbeats.length, pausedAt, 'a paused guest prints no heartbeat');

    await qmp.execute('cont');
    assert.equal((await qmp.execute<{ status: string }>('query-status')).status, 'running');
    const resumed = await g.waitHeartbeats(2, 'heartbeats after resume');
    assert.ok(resumed[0]!.seq > first[2]!.seq);
    assert.ok(resumed.every((h) => h.status === 'ok'));

    const exit = await g.vm!.stop(5000);
    assert.equal(g.vm!.alive, false);
    assert.equal(exit.signal, null, 'quit, not killed');
  });

  it('keeps verifying OK while dirtying 64 MiB/s of 256 MiB', async () => {
    const g = new GuestUnderTest();
    guests.push(g);
    const spec: VmSpec = {
      name: 'busy',
      memoryMiB: guestRamMiB(256),
      vcpus: 1,
      machine: 'pc',
      cpu: 'qemu64',
      disks: [],
      nics: [],
      boot: guestBoot({ memMiB: 256, dirtyMiBps: 64 }),
    };
    await g.boot(spec, join(dir, 'busy'));
    const beats = await g.waitHeartbeats(5, '5 heartbeats', 40_000);
    assert.ok(
      beats.every((h) => h.status === 'ok'),
      JSON.stringify(beats),
    );
    const last = beats.at(-1)!;
    const firstBeat = beats[0]!;
    const pagesPerSecond = (last.written - firstBeat.written) / (last.seq - firstBeat.seq);
    // 64 MiB/s is 16384 pages/s; allow for heartbeat jitter under load.
    assert.ok(pagesPerSecond > 16384 * 0.7, `rewrote ${pagesPerSecond} pages/s`);
    await g.stop();
  });

  it('reports CORRUPT when a page is changed behind its back: the verifier can fail', async () => {
    const g = new GuestUnderTest();
    guests.push(g);
    const memFile = join('/dev/shm', `vmf-corrupt-${process.pid}.ram`);
    const spec: VmSpec = {
      name: 'victim',
      memoryMiB: guestRamMiB(64),
      vcpus: 1,
      machine: 'pc',
      cpu: 'qemu64',
      disks: [],
      nics: [],
      boot: guestBoot({ memMiB: 64, dirtyMiBps: 0 }),
      memoryBackend: { kind: 'file', path: memFile, share: true },
    };
    try {
      await g.boot(spec, join(dir, 'victim'));
      const ok = await g.waitHeartbeats(2);
      assert.ok(ok.every((h) => h.status === 'ok'));
      const page = 1234;
      // With a shared file backend, guest physical address == file offset for low RAM.
      const fd = openSync(memFile, 'r+');
      writeSync(fd, Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, guestPageAddress(page) + 100);
      closeSync(fd);
      const corrupt = await waitFor(
        'a CORRUPT heartbeat',
        () => g.heartbeats.find((h) => h.status === 'corrupt'),
        20_000,
      );
      assert.equal(corrupt.corruptPage, page);
    } finally {
      await g.stop();
      rmSync(memFile, { force: true });
    }
  });

  it('vmferry host info --json reports the accelerator its own probe evidence supports, the QEMU version and its migration capabilities', async () => {
    const r = await runCli(['host', 'info', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as HostInfo;
    assert.match(info.qemuVersion, /^\d+\.\d+\.\d+$/);
    for (const cap of ['multifd', 'postcopy-ram', 'auto-converge'])
      assert.ok(info.migrationCapabilities.includes(cap), cap);
    assert.equal(typeof info.tls.supported, 'boolean');
    // Whatever this machine's KVM does, the answer must follow from what the probe saw.
    assert.equal(info.kvm.device, existsSync('/dev/kvm'));
    if (!info.kvm.device) {
      assert.equal(info.accelerator, 'tcg');
      assert.equal(info.acceleratorReason, '/dev/kvm does not exist: using TCG (software emulation)');
      return;
    }
    const tcg = info.tcg?.timing;
    assert.ok(tcg !== undefined && !tcg.estimated, 'the probe guest always runs under TCG');
    assert.ok(tcg.bootMs > 0 && tcg.totalMs >= tcg.bootMs && tcg.touchMiBps > 0);
    if (info.kvm.probe === 'failed') {
      assert.equal(info.accelerator, 'tcg');
      assert.equal(info.acceleratorReason, `${info.kvm.detail ?? ''}: using TCG`);
      return;
    }
    assert.equal(info.kvm.probe, 'passed');
    const kvm = info.kvm.timing;
    assert.ok(kvm !== undefined && kvm.bootMs > 0 && kvm.touchMiBps > 0);
    const figures = `under KVM ${describeTiming(kvm)}, under TCG ${describeTiming(tcg)}`;
    if (kvm.totalMs > KVM_SLOWER_FACTOR * tcg.totalMs) {
      assert.equal(info.accelerator, 'tcg');
      assert.equal(
        info.acceleratorReason,
        `KVM works but is slower than TCG here (nested virtualization?): ${figures}: using TCG`,
      );
    } else {
      assert.equal(info.accelerator, 'kvm');
      assert.equal(info.acceleratorReason, `a probe guest ran under KVM: ${figures}`);
    }
  });
});
