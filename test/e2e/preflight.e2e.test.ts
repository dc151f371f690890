import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, HostSummary, PreflightAnswer, VmView } from '../../src/agent/index.js';
import { PlanError } from '../../src/errors.js';
import { TwoHostLab, canUseNetns } from '../../src/lab/index.js';
import { loadTlsIdentity } from '../../src/pki/index.js';
import type { VmSpecDraft } from '../../src/qemu/index.js';
import { EXAMPLE_SETTINGS } from '../../src/policy/settings.fixture.js';
import { guestSpec, guestVmSpec, runCli, vmNames, waitForOkHeartbeats } from './helpers.js';

/**
 * Each pre-flight check made to fail in turn: the migration is refused before
 * anything starts on the destination, with an error that names the check.
 * B sees its own copy of the shared folder (a bind mount only its agent sees):
 * one disk is missing there, another is a different file at the same path.
 */
describe(
  'pre-flight checks refuse a migration before anything starts on the destination (real agents, TCG)',
  { skip: canUseNetns() ? false : 'needs root: per-host views of shared storage and bridges use namespaces' },
  () => {
    let lab: TwoHostLab;
    let a: AgentClient;
    let b: AgentClient;
    let shared: string;

    before(async () => {
      const base = join('/tmp', `vmf-preflight-${process.pid}`);
      shared = join(base, 'shared');
      const sharedOnB = join(base, 'shared-on-b');
      mkdirSync(shared, { recursive: true });
      mkdirSync(sharedOnB, { recursive: true });
      writeFileSync(join(shared, 'same.raw'), Buffer.alloc(4 * 1024 * 1024, 1));
      writeFileSync(join(shared, 'missing.raw'), Buffer.alloc(4 * 1024 * 1024, 2));
      writeFileSync(join(shared, 'different.raw'), Buffer.alloc(4 * 1024 * 1024, 3));
      writeFileSync(join(sharedOnB, 'different.raw'), Buffer.alloc(4 * 1024 * 1024, 4));
      // same.raw is the very same file (inode) in B's view; missing.raw is not there at all.
      linkSync(join(shared, 'same.raw'), join(sharedOnB, 'same.raw'));
      lab = await TwoHostLab.create({
        accel: 'tcg',
        prefix: 'vmp',
        subnet: 80,
        mounts: { b: [{ source: sharedOnB, target: shared }] },
        vmDirs: [shared],
      });
      // QEMU runs as its own user: the disks are its to open.
      for (const file of ['same.raw', 'missing.raw', 'different.raw']) lab.giveToQemu(join(shared, file));
      lab.giveToQemu(join(sharedOnB, 'different.raw'));
      await lab.start();
      a = lab.client('a');
      b = lab.client('b');
      // A bridge only A has.
      spawnSync('ip', ['-n', lab.agents.a.netns ?? '', 'link', 'add', 'bronly', 'type', 'bridge']);
    });
    after(async () => {
      await lab?.close();
      spawnSync('rm', ['-rf', join('/tmp', `vmf-preflight-${process.pid}`)]);
    });

    async function startOnA(name: string, extra: Partial<VmSpecDraft> = {}): Promise<void> {
      await a.post('/v1/vms', { ...guestSpec(name, 8, 0, 16), ...extra }, { timeoutMs: 60_000 });
      await waitForOkHeartbeats(a, name, 1);
    }

    /** The migration is refused with a PlanError naming `check` and `text`; B holds nothing. */
    async function assertRefused(vm: string, check: string, text: RegExp): Promise<void> {
      await assert.rejects(a.post('/v1/migrations', { vm, to: lab.agents.b.address }), (err: unknown) => {
        assert.ok(err instanceof PlanError, `a PlanError, got ${String(err)}`);
        assert.match(err.message, new RegExp(`^pre-flight checks? failed: .*${check}: `));
        assert.match(err.message, text);
        return true;
      });
      assert.deepEqual(await vmNames(b), [], `nothing was started on B for ${vm}`);
      assert.deepEqual((await b.get<{ migrations: unknown[] }>('/v1/migrations')).migrations, []);
      assert.equal((await a.get<VmView>(`/v1/vms/${vm}`)).state, 'running');
      await a.post(`/v1/vms/${vm}/stop`);
    }

    it('GET /v1/host reports the capacity the memory check uses', async () => {
      const host = await b.get<HostSummary>('/v1/host');
      assert.ok(host.capacity.totalMiB > 0);
      assert.ok(host.capacity.availableMiB <= host.capacity.totalMiB);
      assert.equal(
        host.capacity.freeForVmsMiB,
        Math.max(0, host.capacity.availableMiB - host.capacity.reservedMiB),
      );
      assert.ok(host.capacity.reservedMiB >= 512, 'nova reserves 512 MiB for the host by default');
    });

    it('a shared disk missing on the destination', async () => {
      await startOnA('nodisk', {
        disks: [{ path: join(shared, 'missing.raw'), format: 'raw', storage: 'shared' }],
      });
      await assertRefused(
        'nodisk',
        'disk 0',
        /shared disk \/tmp\/.*\/missing\.raw is not there on host-b \(ENOENT/,
      );
    });

    it('a different file at the shared disk path on the destination', async () => {
      await startOnA('otherdisk', {
        disks: [{ path: join(shared, 'different.raw'), format: 'raw', storage: 'shared' }],
      });
      await assertRefused(
        'otherdisk',
        'disk 0',
        /is not the same file as on the source: its first or last MiB differs/,
      );
    });

    it('a bridge the destination lacks', async () => {
      await startOnA('nobridge', { nics: [{ bridge: 'bronly' }] });
      await assertRefused('nobridge', 'bridge bronly', /bridge bronly does not exist on host-b/);
    });

    it('vmferry migrate --dry-run lists every check with its result, failed ones marked', async () => {
      await startOnA('dry', {
        nics: [{ bridge: 'bronly' }],
        disks: [{ path: join(shared, 'same.raw'), format: 'raw', storage: 'shared' }],
      });
      const r = await runCli(['migrate', 'dry', '--to', lab.agents.b.address, '--dry-run'], lab.cliEnv('a'));
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /dry run: dry -> .*: refused by the pre-flight checks/);
      assert.match(r.stdout, /\n {2}ok {10}memory: host-b has \d+ MiB free for VMs, dry needs \d+ MiB/);
      assert.match(r.stdout, /\n {2}ok {10}accelerator: both hosts run guests under TCG/);
      assert.match(r.stdout, /\n {2}ok {10}disk 0: shared disk .*same\.raw is the same file on host-b/);
      assert.match(r.stdout, /\n {2}FAIL {8}bridge bronly: bridge bronly does not exist on host-b/);
      assert.deepEqual(await vmNames(b), []);
      await a.post('/v1/vms/dry/stop');
    });

    it('a machine type the destination QEMU lacks (asked of B directly: both lab hosts have one QEMU)', async () => {
      const asA = lab.clientWith(
        'b',
        await loadTlsIdentity(join(lab.dir, 'ca', 'issued', lab.agents.a.name)),
      );
      const hostA = await a.get<HostSummary>('/v1/host');
      const answer = await asA.post<PreflightAnswer>('/v1/preflight', {
        spec: { ...guestVmSpec('future'), machine: 'pc-i440fx-99.0' },
        source: { name: hostA.name, accelerator: hostA.accelerator, qemuVersion: hostA.qemuVersion },
      });
      const machine = answer.checks.find((c) => c.check === 'machine');
      assert.deepEqual(machine, {
        check: 'machine',
        ok: false,
        message: "host-b's QEMU does not offer machine type pc-i440fx-99.0",
        hint: 'upgrade QEMU on host-b, or migrate to a host whose QEMU offers pc-i440fx-99.0',
      });
      assert.deepEqual(await vmNames(b), []);
    });

    it('too little memory on the destination, and the destination refuses a prepare on its own too', async () => {
      const total = (await b.get<HostSummary>('/v1/host')).capacity.totalMiB;
      lab.setNovaConf('b', `[DEFAULT]\nreserved_host_memory_mb = ${total}\n`);
      await lab.stopAgent('b');
      await lab.startAgent('b');
      b = lab.client('b');
      await startOnA('toobig');
      await assertRefused(
        'toobig',
        'memory',
        /host-b has 0 MiB free for VMs \(\d+ MiB available, \d+ MiB promised .*\), toobig needs \d+ MiB/,
      );
      // A source that skipped the pre-flight: B checks again before starting any QEMU.
      const asA = lab.clientWith(
        'b',
        await loadTlsIdentity(join(lab.dir, 'ca', 'issued', lab.agents.a.name)),
      );
      await assert.rejects(
        asA.post('/v1/incoming', {
          migrationId: '11111111-2222-3333-4444-777777777777',
          sourceHost: lab.agents.a.name,
          spec: guestVmSpec('sneaky'),
          settings: { ...EXAMPLE_SETTINGS, channels: 1 },
        }),
        (err: unknown) =>
          err instanceof PlanError && /memory: host-b has 0 MiB free for VMs/.test(err.message),
      );
      assert.deepEqual(await vmNames(b), []);
    });
  },
);
