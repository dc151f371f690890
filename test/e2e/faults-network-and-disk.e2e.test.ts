import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { VmView } from '../../src/agent/index.js';
import { writeLinuxGuestDiskFill } from '../../src/guest/index.js';
import { TwoHostLab, killLeftoverQemu } from '../../src/lab/index.js';
import { FaultLab, SmallDisk } from './fault-lab.js';
import { guestSpec, migrationReport, waitForOkHeartbeats } from './helpers.js';

describe('fault matrix: a cut link (real QEMU under TCG, real agents)', () => {
  let f: FaultLab;

  before(async () => {
    f = await FaultLab.start('vmz', 66);
  });
  after(async () => {
    await f?.close();
  });

  it('a link cut for 30 s in pre-copy, then restored: the migration goes on and completes on B', async () => {
    const network = f.lab.network;
    assert.ok(network !== undefined, 'the fault matrix needs network namespaces (root)');
    await f.restartWith('a', 'outgoing.precopy-early');
    await f.startGuest('cut');
    const id = await f.migrate('cut', { stallSeconds: 0, completionTimeoutSeconds: 0 });
    await f.reached('outgoing.precopy-early', id);
    network.cutLink();
    f.held.release('outgoing.precopy-early');
    try {
      // The length of the cut is the fault being set up, not something measured.
      await sleep(30_000);
    } finally {
      network.restoreLink();
    }
    const report = await migrationReport(f.a, id, 240_000);
    assert.equal(report.status, 'completed', report.error);
    await f.assertOnlyOn('b', 'cut');
    await f.assertJournals(id, 'b');
    await f.stopVm('b', 'cut');
  });

  it('a link cut for good in pre-copy: the stall fails the migration, A resumes, B drops its copy once it can ask A', async () => {
    const network = f.lab.network;
    assert.ok(network !== undefined, 'the fault matrix needs network namespaces (root)');
    await f.restartWith('a', 'outgoing.precopy-early');
    const seq = await f.startGuest('severed');
    const id = await f.migrate('severed', { stallSeconds: 10, timeoutAction: 'abort' });
    await f.reached('outgoing.precopy-early', id);
    network.cutLink();
    f.held.release('outgoing.precopy-early');
    try {
      const report = await migrationReport(f.a, id, 240_000);
      assert.equal(report.status, 'failed');
      assert.match(report.error ?? '', /^migration aborted: no progress for 10 s$/);
      const view = await f.a.get<VmView>('/v1/vms/severed');
      assert.equal(view.state, 'running');
      await waitForOkHeartbeats(f.a, 'severed', 3, seq);
      // B cannot know yet: its copy stays paused, never started.
      const there = await f.clients.b.get<VmView>('/v1/vms/severed');
      assert.equal(there.state, 'incoming');
    } finally {
      network.restoreLink();
    }
    await f.assertOnlyOn('a', 'severed', seq);
    const { b } = await f.assertJournals(id, 'a');
    // Once the link is back, B's QEMU reads the end of the stream A cancelled and exits, or B's
    // orphan check asks A first: either way B drops its copy, and says which.
    assert.match(
      b?.error ?? '',
      /^(the incoming QEMU exited before the migration completed|source gave up: host-a ended this migration \(failed\) without telling this host; nobody will finish this copy)$/,
    );
    await f.stopVm('a', 'severed');
  });

  it('a link cut at the switch-over of a block migration: A gives the disk copies up and resumes the guest on its own, unchanged disk; B drops its copy and image once it can ask A', async () => {
    const network = f.lab.network;
    assert.ok(network !== undefined, 'the fault matrix needs network namespaces (root)');
    await f.restartWith('a', 'outgoing.switchover');
    // A 64 MiB qcow2 with content in every block; the freestanding guest never touches it.
    const rel = 'switch/disk.qcow2';
    const image = join(f.lab.agents.a.stateDir, 'instances', rel);
    mkdirSync(dirname(image), { recursive: true });
    const raw = join(f.lab.dir, 'switch.raw');
    writeLinuxGuestDiskFill(raw, 64 * 1024 * 1024);
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image]);
    f.lab.giveToQemu(image);
    const sha = (): string => execFileSync('sha256sum', [image], { encoding: 'utf8' }).split(' ')[0] ?? '';
    const before = sha();
    await f.a.post(
      '/v1/vms',
      { ...guestSpec('switch'), disks: [{ path: rel, format: 'qcow2', storage: 'local' }] },
      { timeoutMs: 60_000 },
    );
    const seq = await waitForOkHeartbeats(f.a, 'switch', 2);
    const id = await f.migrate('switch', { block: 'all' });
    await f.reached('outgoing.switchover', id);
    network.cutLink();
    f.held.release('outgoing.switchover');
    try {
      const report = await migrationReport(f.a, id, 240_000);
      assert.equal(report.status, 'failed');
      // A ready mirror still writes its last data at the switch-over: over the cut link it cannot.
      assert.equal(report.error, 'the copy of disk 0 did not complete within 60 s at the switch-over');
      assert.deepEqual(
        report.events.filter((e) => e.startsWith('cancelling the disk copies: ')),
        [],
        report.events.join(' | '),
      );
      assert.equal((await f.a.get<VmView>('/v1/vms/switch')).state, 'running');
      await waitForOkHeartbeats(f.a, 'switch', 3, seq);
    } finally {
      network.restoreLink();
    }
    await f.assertOnlyOn('a', 'switch', seq);
    const { b } = await f.assertJournals(id, 'a');
    // Once the link is back, B's QEMU reads the end of the stream A cancelled and exits, or B's
    // orphan check asks A first: either way B drops its copy and the image it made.
    assert.match(
      b?.error ?? '',
      /^(the incoming QEMU exited before the migration completed|source gave up: host-a ended this migration \(failed\) without telling this host; nobody will finish this copy)$/,
    );
    assert.ok(!existsSync(join(f.lab.agents.b.stateDir, 'instances', rel)), 'no image left on B');
    assert.ok(!existsSync(join(f.lab.agents.b.stateDir, 'instances', 'switch')), 'nor its folder');
    assert.equal(sha(), before, "A's image is unchanged (checksums before and after)");
    await f.stopVm('a', 'switch');
  });
});

describe("fault matrix: the destination's state disk full (real QEMU under TCG, real agents)", () => {
  let f: FaultLab;
  let disk: SmallDisk;

  before(async () => {
    const lab = await TwoHostLab.create({ accel: 'tcg', prefix: 'vmy', subnet: 65 });
    disk = new SmallDisk(lab.agents.b.stateDir);
    await lab.start();
    f = new FaultLab(lab);
  });
  after(async () => {
    await f?.lab.stopAgent('a');
    await f?.lab.stopAgent('b');
    if (f !== undefined) killLeftoverQemu(f.lab.agents.b.stateDir);
    disk?.unmount();
    await f?.lab.close();
    f?.held.remove();
  });

  it('full at the setup: B cannot journal the migration and refuses it naming its journal, A keeps the VM running', async () => {
    await f.restartWith('b');
    const seq = await f.startGuest('nosetup');
    disk.fill();
    let report;
    try {
      report = await migrationReport(f.a, await f.migrate('nosetup'));
    } finally {
      disk.free();
    }
    assert.equal(report.status, 'failed');
    assert.equal(
      report.error,
      `the journal ${f.lab.agents.b.stateDir}/journal.sqlite cannot be written (createMigration): database or disk is full (SQLITE_FULL)`,
    );
    await f.assertOnlyOn('a', 'nosetup', seq);
    const { b } = await f.assertJournals(report.id, 'a');
    assert.equal(b, undefined, 'B has no record of a migration it could not journal');
    await f.stopVm('a', 'nosetup');
  });

  it('full before the hand-over: B refuses to start a guest it cannot journal, A resumes, the error names the disk', async () => {
    await f.restartWith('b', 'incoming.complete');
    const seq = await f.startGuest('nospace');
    const id = await f.migrate('nospace');
    await f.reached('incoming.complete', id);
    disk.fill();
    f.held.release('incoming.complete');
    const report = await migrationReport(f.a, id).finally(() => disk.free());
    assert.equal(report.status, 'failed');
    assert.equal(
      report.error,
      `the hand-over failed (the journal ${f.lab.agents.b.stateDir}/journal.sqlite cannot be written (setMigrationState): database or disk is full (SQLITE_FULL)) and ${f.lab.agents.b.address} dropped its copy`,
    );
    await f.assertOnlyOn('a', 'nospace', seq);
    const { b } = await f.assertJournals(id, 'a');
    assert.match(b?.error ?? '', /^source gave up: /);
    await f.stopVm('a', 'nospace');
  });

  it('full after cont: the guest runs on B, the migration completes, B journals it once the disk has room', async () => {
    await f.restartWith('b', 'incoming.started');
    await f.startGuest('latejournal');
    const id = await f.migrate('latejournal');
    await f.reached('incoming.started', id);
    disk.fill();
    f.held.release('incoming.started');
    let journaledOnB: string | undefined;
    const report = await migrationReport(f.a, id).finally(async () => {
      journaledOnB = (await f.record('b', id))?.state;
      disk.free();
    });
    assert.equal(report.status, 'completed', report.error);
    assert.equal(journaledOnB, 'completing', 'B could not journal the end while its disk was full');
    await f.assertOnlyOn('b', 'latejournal');
    await f.assertJournals(id, 'b');
    await f.stopVm('b', 'latejournal');
  });
});
