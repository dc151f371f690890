import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, VmView } from '../../src/agent/index.js';
import { VmferryError } from '../../src/errors.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../../src/guest/index.js';
import { TwoHostLab, canUseNetns } from '../../src/lab/index.js';
import type { MigrationReport } from '../../src/migration/index.js';
import { packageRoot } from '../../src/paths.js';
import { qemuPidsMatching, runCli, tapLink, vmNames, waitFor, waitForOkHeartbeats } from './helpers.js';

/** Heartbeat sequence numbers in console text, in order. */
function heartbeatSeqs(text: string): number[] {
  return [...text.matchAll(/vmferry-hb seq=(\d+)/g)].map((m) => Number(m[1]));
}

/** Asserts every heartbeat is there once, in order: 5, 6, 7 ... */
function assertConsecutive(seqs: number[], what: string): void {
  assert.ok(seqs.length > 0, `${what}: no heartbeats`);
  seqs.forEach((seq, i) => {
    if (i > 0) assert.equal(seq, (seqs[i - 1] ?? 0) + 1, `${what}: heartbeat ${seq} follows ${seqs[i - 1]}`);
  });
}

describe(
  'a VM from a spec: machine, CPU and MAC stored, a shared disk, a NIC on a bridge, its console across a migration',
  { skip: canUseNetns() ? false : 'taps and bridges need root (network namespaces)' },
  () => {
    let lab: TwoHostLab;
    let a: AgentClient;
    let b: AgentClient;

    before(async () => {
      lab = await TwoHostLab.create({ accel: 'tcg', prefix: 'vmv', subnet: 70 });
      await lab.start();
      a = lab.client('a');
      b = lab.client('b');
    });
    after(async () => {
      await lab?.close();
    });

    it('starts a VM from a spec file: the agent stores a versioned machine, qemu64 and a MAC; its tap is on br0', async () => {
      const disk = join(lab.dir, 'web-1.raw');
      writeFileSync(disk, Buffer.alloc(8 * 1024 * 1024));
      lab.giveToQemu(disk);
      const specFile = join(lab.dir, 'web-1.json');
      writeFileSync(
        specFile,
        JSON.stringify({
          memoryMiB: guestRamMiB(64),
          vcpus: 1,
          boot: { kernel: guestKernelPath(), append: guestAppend({ memMiB: 64, dirtyMiBps: 4 }) },
          disks: [{ path: disk, format: 'raw', storage: 'shared' }],
          nics: [{ bridge: 'br0' }],
        }),
      );
      const started = await runCli(['vm', 'start', 'web-1', '--spec', specFile, '--json'], lab.cliEnv('a'));
      assert.equal(started.code, 0, started.stderr);
      const shown = await runCli(['vm', 'show', 'web-1', '--json'], lab.cliEnv('a'));
      assert.equal(shown.code, 0, shown.stderr);
      const view = JSON.parse(shown.stdout) as VmView;
      assert.match(view.spec.machine, /^pc-i440fx-\d+\.\d+$/);
      assert.equal(view.spec.cpu, 'qemu64', 'TCG lab');
      assert.match(view.spec.nics[0]?.mac ?? '', /^52:54:00(:[0-9a-f]{2}){3}$/);
      assert.equal(view.host, lab.agents.a.name);
      const tap = view.taps[0] ?? '';
      assert.match(tap, /^vmf[0-9a-f]{12}$/);
      const link = tapLink(lab, 'a', tap) ?? 'no tap';
      assert.match(link, /master br0/);
      // The guest's MAC with 0xfe first: a bridge never takes it as its own MAC (see tapMac).
      assert.match(link, new RegExp(`link/ether fe${(view.spec.nics[0]?.mac ?? '').slice(2)} `));
      await waitForOkHeartbeats(a, 'web-1', 2);
    });

    it('migrates it A -> B: same machine, CPU and MAC there, tap gone on A and on br0 on B, the console going on', async () => {
      const before = await a.get<VmView>('/v1/vms/web-1');
      // Someone watching the console on A from before the migration to after it.
      const follower: ChildProcessWithoutNullStreams = spawn(
        process.execPath,
        [join(packageRoot(), 'bin', 'vmferry.js'), 'vm', 'console', 'web-1', '--follow', '--lines', '2'],
        { env: lab.cliEnv('a') },
      );
      let followed = '';
      follower.stdout.on('data', (c: Buffer) => (followed += c.toString('latin1')));
      try {
        await waitFor('the console follower to print a heartbeat', () =>
          heartbeatSeqs(followed).length > 0 ? true : undefined,
        );
        const r = await runCli(['migrate', 'web-1', '--to', lab.agents.b.address, '--json'], lab.cliEnv('a'));
        assert.equal(r.code, 0, r.stderr);
        const report = JSON.parse(r.stdout) as MigrationReport;
        assert.equal(report.status, 'completed', report.error);
        assert.equal(report.guest, 'ok', report.guestDetail);

        const onB = await b.get<VmView>('/v1/vms/web-1');
        const hardware = (v: VmView): unknown => {
          const { machine, cpu, boot, disks, nics, memoryMiB, vcpus } = v.spec;
          return { machine, cpu, boot, disks, nics, memoryMiB, vcpus };
        };
        assert.deepEqual(hardware(onB), hardware(before), 'the stored spec travelled unchanged');
        assert.equal(onB.host, lab.agents.b.name);
        assert.ok(!(await vmNames(a)).includes('web-1'));
        assert.deepEqual(await qemuPidsMatching(join(lab.agents.a.stateDir, 'vms', 'web-1')), []);
        assert.equal(tapLink(lab, 'a', before.taps[0] ?? ''), undefined, "A's tap is removed");
        assert.notEqual(onB.taps[0], before.taps[0], 'each host names its own tap');
        assert.match(tapLink(lab, 'b', onB.taps[0] ?? '') ?? 'no tap', /master br0/);
        const lastSeq = await waitForOkHeartbeats(b, 'web-1', 3);

        await waitFor('the follower on A to show heartbeats printed on B', () =>
          Math.max(...heartbeatSeqs(followed)) >= lastSeq ? true : undefined,
        );
      } finally {
        follower.kill('SIGINT');
      }
      assertConsecutive(heartbeatSeqs(followed), 'vm console --follow across the migration');
      const seqBefore = before.guest.lastSeq ?? 0;
      assert.ok(heartbeatSeqs(followed)[0]! <= seqBefore, 'the follower started before the migration');

      // Asked of either host, the console is the guest's whole output, A's part and B's.
      for (const host of ['a', 'b'] as const) {
        const c = await runCli(['vm', 'console', 'web-1'], lab.cliEnv(host));
        assert.equal(c.code, 0, c.stderr);
        assert.match(c.stdout, /vmferry-guest ready/, 'it starts with the boot on A');
        const seqs = heartbeatSeqs(c.stdout);
        assertConsecutive(seqs, `vm console on ${host}`);
        assert.equal(seqs[0], 1);
        assert.ok(seqs.at(-1)! > seqBefore + 2);
      }
      const tail = await runCli(['vm', 'console', 'web-1', '--lines', '3', '--json'], lab.cliEnv('a'));
      const chunk = JSON.parse(tail.stdout) as { host: string; text: string; start: number; end: number };
      assert.equal(chunk.host, lab.agents.b.name, 'A passes the question on to B');
      assert.equal(chunk.text.trimEnd().split('\n').length, 3);
      assert.equal(chunk.end - chunk.start, chunk.text.length);
    });

    it('refuses a NIC on a bridge the host lacks, or a machine its QEMU lacks, naming it, and starts nothing', async () => {
      const spec = {
        name: 'nowhere',
        memoryMiB: guestRamMiB(16),
        vcpus: 1,
        boot: { kernel: guestKernelPath(), append: guestAppend({ memMiB: 16, dirtyMiBps: 0 }) },
      };
      await assert.rejects(
        a.post('/v1/vms', { ...spec, nics: [{ bridge: 'br9' }] }),
        (err: unknown) =>
          err instanceof VmferryError &&
          err.code === 'VMF_ERR_HOST_SETUP' &&
          err.message === `VM nowhere: nics[0].bridge "br9" does not exist on ${lab.agents.a.name}`,
      );
      await assert.rejects(
        a.post('/v1/vms', { ...spec, machine: 'pc-i440fx-99.0' }),
        (err: unknown) =>
          err instanceof VmferryError &&
          err.code === 'VMF_ERR_USAGE' &&
          /machine "pc-i440fx-99\.0" is not offered by this host's QEMU/.test(err.message),
      );
      assert.ok(!(await vmNames(a)).includes('nowhere'));
      assert.deepEqual(await qemuPidsMatching(join(lab.agents.a.stateDir, 'vms', 'nowhere')), []);
    });

    it('removes the tap when the VM stops', async () => {
      const view = await b.get<VmView>('/v1/vms/web-1');
      assert.ok(tapLink(lab, 'b', view.taps[0] ?? '') !== undefined);
      await b.post('/v1/vms/web-1/stop');
      assert.equal(tapLink(lab, 'b', view.taps[0] ?? ''), undefined);
    });
  },
);
