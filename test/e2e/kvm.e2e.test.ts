import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, HostSummary, VmView } from '../../src/agent/index.js';
import { VmferryError } from '../../src/errors.js';
import { guestKernelPath } from '../../src/guest/index.js';
import { TwoHostLab } from '../../src/lab/index.js';
import { loadTlsIdentity } from '../../src/pki/index.js';
import { probeAccelerator } from '../../src/qemu/index.js';
import { EXAMPLE_SETTINGS } from '../../src/policy/settings.fixture.js';
import {
  guestSpec,
  guestVmSpec,
  migrationReport,
  qemuPidsMatching,
  vmNames,
  waitFor,
  waitForOkHeartbeats,
  waitUntilTransferring,
} from './helpers.js';

const hasKvmDevice = existsSync('/dev/kvm');
// Whether a guest really runs under KVM here, whatever its speed (nested KVM crawls but works).
const kvm = hasKvmDevice ? (await probeAccelerator({ guestKernel: guestKernelPath() })).kvm : undefined;
const kvmSkip =
  kvm === undefined
    ? 'no /dev/kvm on this machine: KVM migrations cannot run here'
    : kvm.probe !== 'passed'
      ? `KVM does not run guests on this machine (${kvm.detail ?? 'probe failed'})`
      : false;
if (kvmSkip !== false) process.stderr.write(`kvm.e2e: skipping KVM migrations: ${kvmSkip}\n`);

/**
 * A guest that touches little memory: under nested virtualization every first touch
 * of a page costs a trip to the outer hypervisor (about 150 pages a second measured
 * here), so 1 MiB keeps the test short there and costs nothing where KVM is native.
 */
const kvmGuest = (name: string): ReturnType<typeof guestSpec> => guestSpec(name, 1, 0, 4);

describe('live migration of a guest under KVM (real QEMU, real agents)', { skip: kvmSkip }, () => {
  let lab: TwoHostLab;
  let a: AgentClient;
  let b: AgentClient;

  before(async () => {
    lab = await TwoHostLab.create({ prefix: 'vmk', subnet: 70, accel: 'kvm' });
    await lab.start();
    a = lab.client('a');
    b = lab.client('b');
  });
  after(async () => {
    await lab?.close();
  });

  it('both agents run their guests under KVM', async () => {
    for (const key of ['a', 'b'] as const) {
      const host: HostSummary = await lab.hostSummary(key);
      assert.equal(host.accelerator, 'kvm');
    }
  });

  it('moves the guest A -> B over native TLS and back B -> A through the tunnel; it verifies OK after each leg', async () => {
    await a.post('/v1/vms', kvmGuest('kvm-mover'), { timeoutMs: 60_000 });
    await waitForOkHeartbeats(a, 'kvm-mover', 2);
    const legs = [
      { from: a, to: b, toKey: 'b', transport: 'native' },
      { from: b, to: a, toKey: 'a', transport: 'tunnelled' },
    ] as const;
    for (const leg of legs) {
      const { id } = await leg.from.post<{ id: string }>('/v1/migrations', {
        vm: 'kvm-mover',
        to: lab.agents[leg.toKey].address,
        options: { transport: leg.transport },
      });
      const report = await migrationReport(leg.from, id);
      assert.equal(report.status, 'completed', report.error);
      assert.equal(report.transport, leg.transport);
      assert.equal(report.tls, true, 'both transports encrypt');
      assert.equal(report.guest, 'ok', report.guestDetail);
      const view = await leg.to.get<VmView>('/v1/vms/kvm-mover');
      assert.equal(view.state, 'running');
      // The guest's counters go on on the destination, still verifying OK.
      await waitForOkHeartbeats(leg.to, 'kvm-mover', 2);
      assert.ok(!(await vmNames(leg.from)).includes('kvm-mover'), 'the source forgot the VM');
    }
    const runDirB = join(lab.agents.b.stateDir, 'vms', 'kvm-mover');
    assert.deepEqual(await qemuPidsMatching(runDirB), [], 'no QEMU left on B');
    await a.post('/v1/vms/kvm-mover/stop');
  });

  it('an aborted migration leaves the guest running on the source, verifying OK, and nothing on B', async () => {
    // A guest that keeps rewriting memory, behind a 1 MiB/s cap: the migration is still sending when aborted.
    await a.post('/v1/vms', guestSpec('kvm-abort', 1, 1, 4), { timeoutMs: 60_000 });
    const seq = await waitForOkHeartbeats(a, 'kvm-abort', 2);
    const { id } = await a.post<{ id: string }>('/v1/migrations', {
      vm: 'kvm-abort',
      to: lab.agents.b.address,
      options: { bandwidthMiBps: 1, transport: 'native' },
    });
    await waitUntilTransferring(a, id, 256 * 1024);
    await a.post(`/v1/migrations/${id}/abort`);
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'cancelled');
    assert.equal((await a.get<VmView>('/v1/vms/kvm-abort')).state, 'running');
    await waitForOkHeartbeats(a, 'kvm-abort', 2, seq);
    await waitFor(
      'B to forget kvm-abort',
      async () => ((await vmNames(b)).includes('kvm-abort') ? undefined : true),
      10_000,
    );
    await a.post('/v1/vms/kvm-abort/stop');
  });
});

describe(
  'a migration between a KVM host and a TCG host is refused before anything starts',
  { skip: hasKvmDevice ? false : 'no /dev/kvm on this machine: no agent can be set to KVM' },
  () => {
    let lab: TwoHostLab;

    before(async () => {
      lab = await TwoHostLab.create({ prefix: 'vmkx', subnet: 71, accel: { a: 'kvm', b: 'tcg' } });
      await lab.start();
    });
    after(async () => {
      await lab?.close();
    });

    it('the source refuses it in its pre-flight check, naming both hosts and accelerators', async () => {
      const b = lab.client('b');
      const a = lab.client('a');
      // The guest runs on the TCG host (it runs there whatever this machine's KVM does).
      await b.post('/v1/vms', guestSpec('mixed', 8, 0, 16), { timeoutMs: 60_000 });
      await waitForOkHeartbeats(b, 'mixed', 2);
      await assert.rejects(
        b.post('/v1/migrations', { vm: 'mixed', to: lab.agents.a.address }),
        (err: unknown) =>
          err instanceof VmferryError &&
          err.code === 'VMF_ERR_PLAN' &&
          err.message ===
            `pre-flight check failed: accelerator: ${lab.agents.b.name} runs guests under TCG and ${lab.agents.a.name} under KVM: a guest cannot move between them`,
      );
      assert.deepEqual(await vmNames(a), [], 'nothing was prepared on the KVM host');
      assert.equal((await b.get<VmView>('/v1/vms/mixed')).state, 'running');
    });

    it('the destination refuses a prepare from a host with another accelerator on its own', async () => {
      // host-b's own certificate, so the request passes every other check a real source passes.
      const asB = lab.clientWith(
        'a',
        await loadTlsIdentity(join(lab.dir, 'ca', 'issued', lab.agents.b.name)),
      );
      await assert.rejects(
        asB.post('/v1/incoming', {
          migrationId: '11111111-2222-3333-4444-666666666666',
          sourceHost: lab.agents.b.name,
          sourceAccelerator: 'tcg',
          spec: guestVmSpec('mixed'),
          settings: { ...EXAMPLE_SETTINGS, channels: 1 },
        }),
        (err: unknown) =>
          err instanceof VmferryError &&
          err.code === 'VMF_ERR_PLAN' &&
          err.message.endsWith(
            `${lab.agents.b.name} runs guests under TCG and ${lab.agents.a.name} under KVM: a guest cannot move between them`,
          ),
      );
      assert.deepEqual(await vmNames(lab.client('a')), []);
      const migrations = await lab.client('a').get<{ migrations: unknown[] }>('/v1/migrations');
      assert.deepEqual(migrations.migrations, [], 'the refused prepare left no journal record');
    });
  },
);
