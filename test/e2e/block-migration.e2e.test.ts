// Block migration between two agents (issue 13): a VM with a 1 GiB local qcow2
// disk, every block of which the host fills with content the Linux guest can
// recompute and the guest keeps rewriting and checking (all of it every 8 s), moves
// with `vmferry migrate --block` over QEMU's TLS and through the agents' tunnel;
// a qcow2 on a base image the destination has moves top layer only; a
// migration failing midway (destination killed, or the link cut) leaves the
// source on its own disk and nothing on the destination.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, VmView } from '../../src/agent/index.js';
import { createImage } from '../../src/block/index.js';
import type { GuestHealth } from '../../src/guest/index.js';
import {
  checkLinuxGuest,
  linuxGuestAppend,
  linuxGuestFiles,
  linuxGuestRamMiB,
  writeLinuxGuestDiskFill,
} from '../../src/guest/index.js';
import { TwoHostLab, type HostKey } from '../../src/lab/index.js';
import type { MigrationReport, MigrationSample } from '../../src/migration/index.js';
import { migrationReport, qemuPidsMatching, runCli, vmNames, waitFor } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Blocks the guest checks per second: all 262144 of the disk every 8 s. */
const VERIFY_BLOCKS_PER_SEC = 32_768;

describe('block migration between two agents (TCG, the Linux guest writing its local qcow2 disk)', () => {
  let lab: TwoHostLab;
  let a: AgentClient;
  let b: AgentClient;

  before(async () => {
    checkLinuxGuest();
    // Clear text is permitted, so that it can be asked for; QEMU TLS is still what the plan chooses unasked.
    lab = await TwoHostLab.create({
      prefix: 'vmb',
      subnet: 80,
      accel: 'tcg',
      // Incoming copies nobody finishes are checked with their source every 2 s (default 60).
      novaConf: '[vmferry]\npermit_cleartext = True\norphan_check_seconds = 2\n',
    });
    await lab.start();
    a = lab.client('a');
    b = lab.client('b');
    // Every block at the guest's generation 0: no block of a disk reads as zeros.
    writeLinuxGuestDiskFill(filled(), GiB);
  });
  after(async () => {
    await lab?.close();
  });

  const instances = (host: HostKey): string => join(lab.agents[host].stateDir, 'instances');
  const filled = (): string => join(lab.dir, 'filled.raw');

  /** A 1 GiB qcow2 holding the guest's content in every block (`path` absolute). */
  function filledImage(path: string): void {
    mkdirSync(dirname(path), { recursive: true });
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', filled(), path]);
  }

  /** A new 1 GiB qcow2 at `rel` under A's instances_path: filled, or an empty top on `backing` (filled). */
  async function newDisk(rel: string, backing?: string): Promise<string> {
    const path = join(instances('a'), rel);
    mkdirSync(dirname(path), { recursive: true });
    if (backing === undefined) filledImage(path);
    else
      await createImage({
        path,
        format: 'qcow2',
        virtualSize: GiB,
        backing: { name: backing, format: 'qcow2' },
      });
    lab.giveToQemu(path);
    return path;
  }

  /** Boots the Linux guest on A with one local disk (`rel` under A's instances_path) it writes `blocksPerSec` blocks/s to. */
  async function startGuest(name: string, rel: string, blocksPerSec: number): Promise<void> {
    const files = linuxGuestFiles();
    const append = linuxGuestAppend({
      memMiB: 32,
      dirtyMiBps: 4,
      verifyMiBps: 32,
      disk: '/dev/vda',
      diskMiB: 1024,
      diskFill: 'host',
      diskDirtyBlocksPerSec: blocksPerSec,
      diskVerifyBlocksPerSec: VERIFY_BLOCKS_PER_SEC,
    });
    await a.post(
      '/v1/vms',
      {
        name,
        memoryMiB: linuxGuestRamMiB(32),
        vcpus: 1,
        boot: { kernel: files.kernel, initrd: files.initrd, append },
        disks: [{ path: rel, format: 'qcow2', storage: 'local' }],
        nics: [],
      },
      { timeoutMs: 60_000 },
    );
    await healthy(a, name);
    const console = await a.get<{ text: string }>(`/v1/vms/${name}/console?lines=200`);
    assert.match(console.text, /vmferry-guest started .* blocks=262144 diskdirty=\d+ diskfill=host /);
  }

  /**
   * Two more complete passes of the guest's check over every block on `client`'s
   * host than when its heartbeats there were first OK, the disk OK throughout:
   * the second of them read and checked every block there.
   */
  async function everyBlockChecked(client: AgentClient, name: string): Promise<void> {
    const first = await healthy(client, name);
    const from = first.parts?.diskPasses;
    assert.ok(from !== undefined, `${name}: the guest reports disk_passes`);
    await waitFor(
      `${name}: two full passes over its disk after pass ${from}`,
      async () => {
        const h = await healthy(client, name, first.lastSeq);
        return (h.parts?.diskPasses ?? 0) >= from + 2 ? true : undefined;
      },
      120_000,
    );
  }

  /** Three good heartbeats in a row (after `afterSeq`), with the disk checked OK. */
  async function healthy(client: AgentClient, name: string, afterSeq?: number): Promise<GuestHealth> {
    const health = await client.get<GuestHealth>(
      `/v1/vms/${name}/health?minOk=3&waitMs=90000${afterSeq !== undefined ? `&afterSeq=${afterSeq}` : ''}`,
      { timeoutMs: 100_000 },
    );
    assert.equal(health.state, 'ok', `${name}: ${health.reason}`);
    assert.equal(health.parts?.disk, 'ok', `${name}: disk ${health.parts?.disk ?? 'unchecked'}`);
    return health;
  }

  async function migrate(name: string, flags: string[]): Promise<MigrationReport> {
    const r = await runCli(
      ['migrate', name, '--to', lab.agents.b.address, ...flags, '--json'],
      lab.cliEnv('a'),
    );
    const report = JSON.parse(r.stdout) as MigrationReport;
    assert.equal(report.status, 'completed', `${report.error ?? ''} ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    return report;
  }

  /** After the move: the VM runs on B and its guest checks RAM and every disk block OK there. */
  async function assertMoved(name: string, report: MigrationReport): Promise<void> {
    assert.equal(report.guest, 'ok', report.guestDetail);
    assert.ok(!(await vmNames(a)).includes(name));
    assert.equal((await b.get<VmView>(`/v1/vms/${name}`)).state, 'running');
    const there = await healthy(b, name);
    assert.equal(there.parts?.mem, 'ok');
    const later = await healthy(b, name, there.lastSeq);
    assert.ok((later.lastSeq ?? 0) > (there.lastSeq ?? 0), 'the guest goes on on B');
    await everyBlockChecked(b, name);
  }

  it('moves a VM with a 1 GiB local qcow2 over QEMU TLS while the guest writes; every block checks OK on B; A removes its image', async () => {
    const rel = 'tls-vm/disk.qcow2';
    await newDisk(rel);
    await startGuest('tls-vm', rel, 64);
    const report = await migrate('tls-vm', ['--block', '--transport', 'native']);
    assert.equal(report.transport, 'native');
    assert.equal(report.tls, true, 'both hosts can do QEMU TLS: native is encrypted by it, the disks too');
    assert.equal(report.disks?.length, 1);
    assert.equal(report.disks?.[0]?.sync, 'full');
    assert.ok((report.disks?.[0]?.bytes ?? 0) >= 64 * MiB, `copied ${report.disks?.[0]?.bytes} bytes`);
    assert.ok(
      report.reasons.some((r) => /disk 0 \(tls-vm\/disk\.qcow2, local\): copied whole/.test(r)),
      report.reasons.join('\n'),
    );
    await assertMoved('tls-vm', report);
    assert.ok(existsSync(join(instances('b'), rel)), "B's copy is under B's instances_path");
    assert.ok(!existsSync(join(instances('a'), rel)), "A's image is removed once the guest runs on B");
    assert.ok(!existsSync(join(instances('a'), 'tls-vm')), "and A's folder of it");

    // The journal kept per-disk samples: copied, remaining and dirty next to RAM.
    const samples = await a.get<{ samples: MigrationSample[] }>(`/v1/migrations/${report.id}/samples`);
    const withDisks = samples.samples.filter((s) => s.disks !== undefined);
    assert.ok(withDisks.length >= 2, `${withDisks.length} samples with disks`);
    assert.ok(
      withDisks.some((s) => s.disks?.[0]?.ready === false) || withDisks[0]?.disks?.[0]?.ready === true,
    );
    assert.ok(
      withDisks.some((s) => s.disks?.[0]?.ready === true && s.transferredBytes > 0),
      'RAM moved once in step',
    );
    const chart = await runCli(
      ['migration', 'show', report.id, '--svg', join(lab.dir, 'block.svg')],
      lab.cliEnv('a'),
    );
    assert.equal(chart.code, 0, chart.stderr);
    assert.match(readFileSync(join(lab.dir, 'block.svg'), 'utf8'), /data-series="remaining-disk"/);
    await stopVm(b, 'tls-vm');
  });

  it("moves it through the agents' tunnel, keeping the source image when asked", async () => {
    const rel = 'tunnel-vm/disk.qcow2';
    await newDisk(rel);
    await startGuest('tunnel-vm', rel, 64);
    const report = await migrate('tunnel-vm', ['--block', '--transport', 'tunnelled', '--keep-source-disks']);
    // B's NBD server listens only on a unix socket in B's namespace: the disk can only have come through the tunnel.
    assert.equal(report.transport, 'tunnelled');
    assert.ok((report.disks?.[0]?.bytes ?? 0) >= 64 * MiB);
    await assertMoved('tunnel-vm', report);
    assert.ok(existsSync(join(instances('a'), rel)), '--keep-source-disks keeps it');
    await stopVm(b, 'tunnel-vm');
  });

  it('moves it in clear text when asked for, [vmferry] permit_cleartext allowing it', async () => {
    const rel = 'clear-vm/disk.qcow2';
    await newDisk(rel);
    await startGuest('clear-vm', rel, 64);
    const { id } = await a.post<{ id: string }>('/v1/migrations', {
      vm: 'clear-vm',
      to: lab.agents.b.address,
      options: { block: 'all', transport: 'native', tls: false },
    });
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'completed', report.error);
    assert.deepEqual([report.transport, report.tls], ['native', false]);
    assert.ok(
      report.reasons.some((r) => /^CLEAR TEXT: requested .*permit_cleartext/.test(r)),
      report.reasons.join('\n'),
    );
    assert.ok((report.disks?.[0]?.bytes ?? 0) >= 64 * MiB, `copied ${report.disks?.[0]?.bytes} bytes`);
    await assertMoved('clear-vm', report);
    assert.ok(!existsSync(join(instances('a'), rel)));
    await stopVm(b, 'clear-vm');
  });

  /** A filled base image, the same on both hosts (made once): the guest's content in every block. */
  function sharedBase(): string {
    const base = join(instances('a'), '_base', 'base.qcow2');
    if (existsSync(base)) return '../_base/base.qcow2';
    filledImage(base);
    mkdirSync(join(instances('b'), '_base'), { recursive: true });
    execFileSync('cp', [base, join(instances('b'), '_base', 'base.qcow2')]);
    // Each QEMU reads its host's base image (made owner-only like every image vmferry creates).
    lab.giveToQemu(base);
    lab.giveToQemu(join(instances('b'), '_base', 'base.qcow2'));
    return '../_base/base.qcow2';
  }

  it('copies only the top layer when B has the same base image (--block auto)', async () => {
    // The guest's writes go to the top.
    const rel = 'inc-vm/disk.qcow2';
    await newDisk(rel, sharedBase());
    await startGuest('inc-vm', rel, 64);
    const report = await migrate('inc-vm', ['--block', 'auto']);
    assert.equal(report.disks?.[0]?.sync, 'top');
    const copied = report.disks?.[0]?.bytes ?? 0;
    assert.ok(copied < 128 * MiB, `copied ${copied} bytes: well under the 1 GiB of the base`);
    assert.ok(
      report.reasons.some((r) =>
        /top image only \(VIR_MIGRATE_NON_SHARED_INC\): host-b has its backing image/.test(r),
      ),
      report.reasons.join('\n'),
    );
    // Every block checked on B reads through B's copy of the top into B's own base.
    await assertMoved('inc-vm', report);
    await stopVm(b, 'inc-vm');
  });

  it('a migration failing midway (B killed during the disk copy) leaves A running on its unchanged disk and nothing on B', async () => {
    const rel = 'fail-vm/disk.qcow2';
    const image = await newDisk(rel);
    // The host filled the disk and the guest only reads it: the image must not change at all.
    await startGuest('fail-vm', rel, 0);
    const sha = (): string => execFileSync('sha256sum', [image], { encoding: 'utf8' }).split(' ')[0] ?? '';
    const before = await waitFor('the image to stay the same', async () => {
      const first = sha();
      await new Promise((r) => setTimeout(r, 1000));
      return sha() === first ? first : undefined;
    });
    const { id } = await a.post<{ id: string }>('/v1/migrations', {
      vm: 'fail-vm',
      to: lab.agents.b.address,
      options: { block: 'all', bandwidthMiBps: 4 },
    });
    await waitFor('some of the disk copied', async () => {
      const m = await a.get<{ live?: { sample?: MigrationSample } }>(`/v1/migrations/${id}`);
      return (m.live?.sample?.disks?.[0]?.transferredBytes ?? 0) > 8 * MiB ? true : undefined;
    });
    const pids = await qemuPidsMatching(join(lab.agents.b.stateDir, 'vms', 'fail-vm'));
    assert.equal(pids.length, 1, `B's incoming QEMU: ${pids.join(', ')}`);
    process.kill(pids[0]!, 'SIGKILL');
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'failed');
    assert.equal((await a.get<VmView>('/v1/vms/fail-vm')).state, 'running');
    await everyBlockChecked(a, 'fail-vm');
    assert.equal(sha(), before, "A's image is unchanged");
    await waitFor('B to forget fail-vm', async () =>
      (await vmNames(b)).includes('fail-vm') ? undefined : true,
    );
    assert.ok(!existsSync(join(instances('b'), rel)), 'no image left on B');
    assert.ok(!existsSync(join(instances('b'), 'fail-vm')), 'nor its folder');
    await stopVm(a, 'fail-vm');
  });

  /** Stops a VM the test is done with: a guest checking its disk keeps a vCPU busy (TCG). */
  async function stopVm(client: AgentClient, name: string): Promise<void> {
    await client.post(`/v1/vms/${name}/stop`, {}, { timeoutMs: 30_000 });
  }

  /** Starts a block migration to B natively, the disk copy capped at 4 MiB/s, and waits until 8 MiB are copied. */
  async function copyingTo(name: string, options: Record<string, unknown> = {}): Promise<string> {
    const { id } = await a.post<{ id: string }>('/v1/migrations', {
      vm: name,
      to: lab.agents.b.address,
      options: { block: 'all', transport: 'native', bandwidthMiBps: 4, ...options },
    });
    await waitFor('some of the disk copied', async () => {
      const m = await a.get<{ live?: { sample?: MigrationSample } }>(`/v1/migrations/${id}`);
      return (m.live?.sample?.disks?.[0]?.transferredBytes ?? 0) > 8 * MiB ? true : undefined;
    });
    return id;
  }

  /** B has no VM, no image and no folder of `name` any more, and its record of the migration says why it failed. */
  async function goneFromB(name: string, rel: string, id: string): Promise<string> {
    await waitFor(
      `B to drop ${name}`,
      async () => ((await vmNames(b)).includes(name) ? undefined : true),
      120_000,
    );
    const record = await waitFor(`B's record of ${id} to end`, async () => {
      const m = await b.get<{ state: string; error: string | null }>(`/v1/migrations/${id}`);
      return m.state === 'failed' ? m : undefined;
    });
    assert.ok(!existsSync(join(instances('b'), rel)), 'no image left on B');
    assert.ok(!existsSync(join(instances('b'), dirname(rel))), 'nor its folder');
    return record.error ?? '';
  }

  it("a link cut during the disk copy: the stalled copy fails the migration, A's guest goes on on its own disk, B drops its copy once the link is back", async () => {
    const rel = 'cut-vm/disk.qcow2';
    await newDisk(rel);
    await startGuest('cut-vm', rel, 16);
    // The memory's own stall limit stays at its default (150 s): the disk copy's is what fires.
    const id = await copyingTo('cut-vm', { diskStallSeconds: 10 });
    const network = lab.network;
    assert.ok(network !== undefined, 'the lab runs in network namespaces');
    network.cutLink();
    try {
      const report = await migrationReport(a, id);
      assert.equal(report.status, 'failed');
      assert.equal(
        report.error,
        `migration aborted: the disk copy moved nothing for 10 s (is ${lab.agents.b.name} reachable?)`,
      );
      // The mirror ended, its node went, QEMU answered throughout: only B could not be told.
      assert.deepEqual(
        report.events.filter((e) => e.startsWith('cancelling the disk copies: ')),
        [],
        report.events.join(' | '),
      );
      assert.ok(
        report.events.some((e) => e.startsWith('destination cleanup failed: ')),
        report.events.join(' | '),
      );
      assert.equal((await a.get<VmView>('/v1/vms/cut-vm')).state, 'running');
      // The guest's writes go on while the link is still cut: nothing waits on B any more.
      const health = await healthy(a, 'cut-vm');
      await healthy(a, 'cut-vm', health.lastSeq);
    } finally {
      network.restoreLink();
    }
    // B could not be told: its orphan check asks A once the link is back, and drops the copy.
    const error = await goneFromB('cut-vm', rel, id);
    assert.equal(
      error,
      `source gave up: ${lab.agents.a.name} ended this migration (failed) without telling this host; nobody will finish this copy`,
    );
    // A never switched to B's image: its guest still writes and checks all of its own disk with B's gone.
    await everyBlockChecked(a, 'cut-vm');
    await stopVm(a, 'cut-vm');
  });

  it("a link cut while the memory moves with the disks in step: nothing moves for disk_stall_timeout, the migration fails, A's guest writes go on on its own disk", async () => {
    const rel = 'ramcut-vm/disk.qcow2';
    // Only the top layer is copied: the disks are in step in seconds, the memory then takes long at 4 MiB/s.
    await newDisk(rel, sharedBase());
    await startGuest('ramcut-vm', rel, 16);
    const { id } = await a.post<{ id: string }>('/v1/migrations', {
      vm: 'ramcut-vm',
      to: lab.agents.b.address,
      options: { block: 'auto', transport: 'native', bandwidthMiBps: 4, diskStallSeconds: 10 },
    });
    await waitFor('the disks in step and the memory moving', async () => {
      const m = await a.get<{ live?: { sample?: MigrationSample } }>(`/v1/migrations/${id}`);
      const sample = m.live?.sample;
      return sample?.disks?.[0]?.ready === true && sample.status === 'active' && sample.transferredBytes > MiB
        ? true
        : undefined;
    });
    const network = lab.network;
    assert.ok(network !== undefined, 'the lab runs in network namespaces');
    network.cutLink();
    try {
      const report = await migrationReport(a, id);
      assert.equal(report.status, 'failed');
      assert.equal(
        report.error,
        'migration aborted: neither the memory nor the disk copy moved for 10 s while the disks are mirrored',
      );
      assert.ok(
        report.events.some((e) =>
          /^neither the memory nor the disk copy moved for 10 s while the disks are mirrored at [\d.]+ s: abort/.test(
            e,
          ),
        ),
        report.events.join(' | '),
      );
      assert.equal((await a.get<VmView>('/v1/vms/ramcut-vm')).state, 'running');
      // The link is still cut: the guest's writes no longer wait on B.
      const health = await healthy(a, 'ramcut-vm');
      await healthy(a, 'ramcut-vm', health.lastSeq);
    } finally {
      network.restoreLink();
    }
    // Once the link is back B drops the copy by whichever comes first: its orphan check asking A,
    // or its incoming QEMU finding the memory stream gone (it had started, unlike the copy-time cut).
    const error = await goneFromB('ramcut-vm', rel, id);
    const ends = [
      `source gave up: ${lab.agents.a.name} ended this migration (failed) without telling this host; nobody will finish this copy`,
      'the incoming QEMU exited before the migration completed',
    ];
    assert.ok(ends.includes(error), error);
    await everyBlockChecked(a, 'ramcut-vm');
    await stopVm(a, 'ramcut-vm');
  });

  it("B's agent killed (-9) during the disk copy and restarted: B removes the image it made, A keeps the VM on its own disk", async () => {
    const rel = 'restart-vm/disk.qcow2';
    await newDisk(rel);
    await startGuest('restart-vm', rel, 16);
    const id = await copyingTo('restart-vm');
    await lab.stopAgent('b', 'SIGKILL');
    await lab.startAgent('b');
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'failed');
    assert.match(report.error ?? '', /^the copy of disk 0 stopped: /);
    assert.equal((await a.get<VmView>('/v1/vms/restart-vm')).state, 'running');
    const error = await goneFromB('restart-vm', rel, id);
    assert.equal(error, 'the agent restarted while the migration was in flight');
    await everyBlockChecked(a, 'restart-vm');
    await stopVm(a, 'restart-vm');
  });

  it("A's agent killed (-9) during the disk copy with the link cut, and restarted: A gives the stuck copy up so the guest's writes go on, B drops its copy once the link is back", async () => {
    const rel = 'srckill-vm/disk.qcow2';
    await newDisk(rel);
    await startGuest('srckill-vm', rel, 16);
    const id = await copyingTo('srckill-vm');
    const network = lab.network;
    assert.ok(network !== undefined, 'the lab runs in network namespaces');
    network.cutLink();
    try {
      await lab.stopAgent('a', 'SIGKILL');
      await lab.startAgent('a');
      const record = await waitFor(`A's record of ${id} to end`, async () => {
        const m = await a.get<{ state: string; error: string | null }>(`/v1/migrations/${id}`);
        return m.state === 'failed' ? m : undefined;
      });
      assert.equal(record.error, 'the agent restarted while the migration was in flight');
      assert.equal((await a.get<VmView>('/v1/vms/srckill-vm')).state, 'running');
      // Still cut off from B: a mirror left running would hold every guest write (write-blocking).
      await everyBlockChecked(a, 'srckill-vm');
    } finally {
      network.restoreLink();
    }
    const error = await goneFromB('srckill-vm', rel, id);
    assert.equal(
      error,
      `source gave up: ${lab.agents.a.name} ended this migration (failed) without telling this host; nobody will finish this copy`,
    );
    await stopVm(a, 'srckill-vm');
  });
});
