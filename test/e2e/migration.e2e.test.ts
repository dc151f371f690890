import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, MigrationRecord, VmView } from '../../src/agent/index.js';
import { PeerError, VmferryError } from '../../src/errors.js';
import { TwoHostLab } from '../../src/lab/index.js';
import type { MigrationReport } from '../../src/migration/index.js';
import { initCa, issueCertificate, loadTlsIdentity } from '../../src/pki/index.js';
import { EXAMPLE_SETTINGS } from '../../src/policy/settings.fixture.js';
import {
  guestSpec,
  guestVmSpec,
  migrationReport,
  qemuPidsMatching,
  runCli,
  vmNames,
  waitFor,
  waitForOkHeartbeats,
  waitUntilTransferring,
} from './helpers.js';

describe('live migration between two agents (real QEMU under TCG, real agents)', () => {
  let lab: TwoHostLab;
  let a: AgentClient;
  let b: AgentClient;

  before(async () => {
    lab = await TwoHostLab.create({ prefix: 'vme', subnet: 10, accel: 'tcg' });
    await lab.start();
    a = lab.client('a');
    b = lab.client('b');
  });
  after(async () => {
    await lab?.close();
  });

  async function startGuest(name: string): Promise<number> {
    await a.post('/v1/vms', guestSpec(name), { timeoutMs: 60_000 });
    return waitForOkHeartbeats(a, name, 2);
  }

  /** Starts a bandwidth-capped migration so there is time to interfere with it. */
  async function startSlowMigration(name: string): Promise<string> {
    const { id } = await a.post<{ id: string }>('/v1/migrations', {
      vm: name,
      to: lab.agents.b.address,
      options: { bandwidthMiBps: 16 },
    });
    await waitUntilTransferring(a, id);
    return id;
  }

  /** After a failed migration: the VM runs on A, its guest still verifies OK, B holds nothing of it. */
  async function assertSourceIntact(name: string, seqBefore: number): Promise<void> {
    const view = await a.get<VmView>(`/v1/vms/${name}`);
    assert.equal(view.state, 'running');
    await waitForOkHeartbeats(a, name, 3, seqBefore);
    await waitFor(
      `B to forget ${name}`,
      async () => ((await vmNames(b)).includes(name) ? undefined : true),
      10_000,
    );
    await waitFor(`B's QEMU for ${name} to be gone`, async () =>
      (await qemuPidsMatching(join(lab.agents.b.stateDir, 'vms', name))).length === 0 ? true : undefined,
    );
  }

  it('vmferry host info --agent reports, for each host, that QEMU TLS is usable', async () => {
    for (const key of ['a', 'b'] as const) {
      const r = await runCli(
        ['host', 'info', '--agent', lab.agents[key].localAddress, '--json'],
        lab.cliEnv(key),
      );
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout) as { name: string; nativeTls: boolean; accelerator: string };
      assert.equal(info.name, lab.agents[key].name);
      assert.equal(info.nativeTls, true);
      assert.equal(info.accelerator, 'tcg');
    }
  });

  it('migrates a running guest A -> B with the CLI; the guest verifies OK on B and the source QEMU is gone', async () => {
    await startGuest('mover');
    const r = await runCli(['migrate', 'mover', '--to', lab.agents.b.address, '--json'], lab.cliEnv('a'));
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as MigrationReport;
    assert.equal(report.status, 'completed', report.error);
    // No figures for this pair of hosts yet: the default benchmarked for QEMU 7.2, never clear text.
    assert.equal(report.transport, 'tunnelled');
    assert.equal(report.tls, true, 'the plan must not send clear text');
    assert.ok(
      report.reasons.some((r) => /no figures for this pair of hosts.*benchmark on QEMU 7\.2/.test(r)),
      report.reasons.join('\n'),
    );
    assert.equal(report.guest, 'ok', report.guestDetail);
    assert.ok(report.bytes > 100 * 1024 * 1024, `sent ${report.bytes} bytes`);
    assert.ok(report.downtimeMs !== undefined && report.downtimeMs >= 0);
    assert.ok(report.iterations >= 1);

    assert.ok(!(await vmNames(a)).includes('mover'));
    assert.deepEqual(await qemuPidsMatching(join(lab.agents.a.stateDir, 'vms', 'mover')), []);
    const onB = await b.get<VmView>('/v1/vms/mover');
    assert.equal(onB.state, 'running');
    await waitForOkHeartbeats(b, 'mover', 3);
  });

  it('refuses to migrate a VM to its own host, or one it does not have, saying why', async () => {
    const self = await runCli(['migrate', 'mover', '--to', lab.agents.b.address], lab.cliEnv('b'));
    assert.equal(self.code, 1);
    assert.match(self.stderr, /is this host \(host-b\): a VM cannot migrate to itself/);
    const missing = await runCli(['migrate', 'ghost', '--to', lab.agents.b.address], lab.cliEnv('a'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no VM named ghost on this host/);
    assert.equal((await b.get<VmView>('/v1/vms/mover')).state, 'running');
  });

  it('keeps knowing its VMs and migrations after an agent restart (reattaches to live QEMU)', async () => {
    const before = await b.get<VmView>('/v1/vms/mover');
    await lab.stopAgent('b');
    await lab.startAgent('b');
    const after = await b.get<VmView>('/v1/vms/mover');
    assert.equal(after.state, 'running');
    assert.equal(after.pid, before.pid, 'the same QEMU process, reattached');
    await waitForOkHeartbeats(b, 'mover', 2, before.guest.lastSeq);
    const { migrations } = await b.get<{ migrations: MigrationRecord[] }>('/v1/migrations');
    assert.ok(
      migrations.some((m) => m.vm === 'mover' && m.role === 'destination' && m.state === 'completed'),
    );
    await b.post('/v1/vms/mover/stop');
  });

  it('fails cleanly when the destination QEMU is killed midway: source keeps running, guest OK, B cleaned', async () => {
    const seq = await startGuest('victim');
    const id = await startSlowMigration('victim');
    const pid = Number(readFileSync(join(lab.agents.b.stateDir, 'vms', 'victim', 'qemu.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'failed');
    assert.ok(report.error !== undefined && report.error.length > 0);
    await assertSourceIntact('victim', seq);
    await a.post('/v1/vms/victim/stop');
  });

  it("aborts on the operator's request (vmferry migrate --abort): cancelled, source untouched", async () => {
    const seq = await startGuest('abortme');
    const id = await startSlowMigration('abortme');
    const r = await runCli(['migrate', '--abort', id], lab.cliEnv('a'));
    assert.equal(r.code, 0, r.stderr);
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'cancelled');
    await assertSourceIntact('abortme', seq);
    const record = await a.get<MigrationRecord & { events: { to: string; message: string | null }[] }>(
      `/v1/migrations/${id}`,
    );
    assert.equal(record.state, 'cancelled');
    assert.deepEqual(
      record.events.map((e) => e.to).filter((s, i, all) => all.indexOf(s) === i),
      ['preparing', 'migrating', 'cancelled'],
      `the journal holds the state history: ${record.events.map((e) => `${e.to} (${e.message})`).join(', ')}`,
    );
    const shown = await runCli(['migration', 'show', id], lab.cliEnv('a'));
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /migrating -> cancelled: migration cancelled: aborted by the operator/);
    await a.post('/v1/vms/abortme/stop');
  });

  it('survives the source agent dying mid-migration: recorded failed after restart, VM runs on A, B cleaned', async () => {
    const seq = await startGuest('orphan');
    const id = await startSlowMigration('orphan');
    await lab.stopAgent('a', 'SIGKILL');
    await lab.startAgent('a');
    const record = await a.get<MigrationRecord>(`/v1/migrations/${id}`);
    assert.equal(record.state, 'failed');
    assert.match(record.error ?? '', /restart/);
    await assertSourceIntact('orphan', seq);
    await a.post('/v1/vms/orphan/stop');
  });

  it('survives the destination agent dying mid-migration: the source resumes, B drops the half-received VM on restart', async () => {
    const seq = await startGuest('stranded');
    const id = await startSlowMigration('stranded');
    await lab.stopAgent('b', 'SIGKILL');
    const report = await migrationReport(a, id);
    assert.equal(report.status, 'failed');
    await lab.startAgent('b');
    await assertSourceIntact('stranded', seq);
    await a.post('/v1/vms/stranded/stop');
  });

  it('refuses clients without a certificate from the deployment CA', async () => {
    const foreignCa = join(lab.dir, 'foreign-ca');
    await initCa(foreignCa);
    await issueCertificate(foreignCa, { name: 'operator', role: 'operator' });
    const intruder = lab.clientWith('a', await loadTlsIdentity(join(foreignCa, 'issued', 'operator')));
    // The agent closes the handshake: the request never reaches the API, so no HTTP answer comes back.
    const unreached = (err: unknown): boolean =>
      err instanceof PeerError && err.message.startsWith(`cannot reach agent ${lab.agents.a.localAddress}: `);
    await assert.rejects(intruder.get('/v1/vms'), unreached);
    await assert.rejects(intruder.post('/v1/incoming', { migrationId: 'x' }), unreached);
    const r = await runCli(['vm', 'list'], {
      ...lab.cliEnv('a'),
      VMFERRY_TLS_DIR: join(foreignCa, 'issued', 'operator'),
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot reach agent|certificate|alert/i);
    assert.ok(existsSync(lab.operatorDir));
  });

  it('refuses a certificate the CA revoked once the agent reloads its TLS directory (vmferry ca revoke, SIGHUP)', async () => {
    const caDir = join(lab.dir, 'ca');
    await issueCertificate(caDir, { name: 'mallory', role: 'operator' });
    const mallory = lab.clientWith('a', await loadTlsIdentity(join(caDir, 'issued', 'mallory')));
    await mallory.get('/v1/vms');
    mallory.close();
    const r = await runCli(['ca', 'revoke', caDir, '--name', 'mallory', '--json'], lab.cliEnv('a'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { newlyRevoked: boolean }).newlyRevoked, true);
    assert.ok(
      existsSync(join(caDir, 'issued', lab.agents.a.name, 'crl.pem')),
      "the CRL is in A's TLS directory",
    );
    const pid = lab.agents.a.process?.pid;
    assert.ok(pid !== undefined);
    process.kill(pid, 'SIGHUP');
    await waitFor('A to refuse the revoked certificate', async () => {
      const attempt = lab.clientWith('a', await loadTlsIdentity(join(caDir, 'issued', 'mallory')));
      try {
        await attempt.get('/v1/vms');
        return undefined;
      } catch (err) {
        return err instanceof PeerError ? true : undefined;
      } finally {
        attempt.close();
      }
    });
    await a.get('/v1/vms'); // the operator's certificate is not revoked, and the agent runs on
    assert.equal(lab.agents.a.process?.pid, pid, 'reloaded, not restarted');
  });

  it('lets only the source agent that prepared a migration drive it on the destination: not another host, not an operator', async () => {
    const { migrations } = await b.get<{ migrations: MigrationRecord[] }>('/v1/migrations');
    const incoming = migrations.find((m) => m.role === 'destination');
    assert.ok(incoming !== undefined, 'B received a migration earlier in this file');
    await issueCertificate(join(lab.dir, 'ca'), { name: 'host-c', role: 'host', ips: ['127.0.0.1'] });
    const hostC = lab.clientWith('b', await loadTlsIdentity(join(lab.dir, 'ca', 'issued', 'host-c')));
    for (const action of ['abort', 'complete', 'resume', 'recover']) {
      await assert.rejects(
        hostC.post(`/v1/incoming/${incoming.id}/${action}`, action === 'abort' ? { reason: 'not mine' } : {}),
        (err: unknown) =>
          err instanceof VmferryError &&
          err.code === 'VMF_ERR_AUTH' &&
          err.message === `migration ${incoming.id} belongs to ${lab.agents.a.name}; host-c may not drive it`,
      );
      await assert.rejects(
        b.post(`/v1/incoming/${incoming.id}/${action}`, action === 'abort' ? { reason: 'not mine' } : {}),
        (err: unknown) =>
          err instanceof VmferryError &&
          err.code === 'VMF_ERR_AUTH' &&
          err.message === `operator "operator" may not call POST /v1/incoming/:id/${action}`,
      );
    }
    const still = await b.get<MigrationRecord>(`/v1/migrations/${incoming.id}`);
    assert.equal(still.state, incoming.state, 'nothing changed');
  });

  it('refuses to start an agent under a name its certificate does not carry or with an operator certificate, and asks only its own source for a migration', async () => {
    const r = await runCli(
      [
        'agent',
        '--name',
        'not-host-a',
        '--tls-dir',
        join(lab.dir, 'ca', 'issued', lab.agents.a.name),
        '--state-dir',
        join(lab.dir, 'wrong-name'),
        '--listen',
        '127.0.0.1:0',
      ],
      lab.cliEnv('a'),
    );
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      new RegExp(`agent name "not-host-a" is not the name in its certificate \\(CN=${lab.agents.a.name}\\)`),
    );
    const asOperator = await runCli(
      [
        'agent',
        '--tls-dir',
        lab.operatorDir,
        '--state-dir',
        join(lab.dir, 'as-operator'),
        '--listen',
        '127.0.0.1:0',
      ],
      lab.cliEnv('a'),
    );
    assert.notEqual(asOperator.code, 0);
    assert.match(
      asOperator.stderr,
      /the agent's certificate \(CN=operator\) has role operator: an agent needs a host certificate/,
    );
    // A valid host certificate claiming to be another host's agent cannot prepare a migration from it.
    const hostC = lab.clientWith('b', await loadTlsIdentity(join(lab.dir, 'ca', 'issued', 'host-c')));
    await assert.rejects(
      hostC.post('/v1/incoming', {
        migrationId: '11111111-2222-3333-4444-555555555555',
        sourceHost: lab.agents.a.name,
        spec: guestVmSpec('impostor'),
        settings: EXAMPLE_SETTINGS,
      }),
      (err: unknown) =>
        err instanceof VmferryError &&
        err.code === 'VMF_ERR_AUTH' &&
        err.message ===
          `a migration from ${lab.agents.a.name} must be asked for by that agent, not by host-c`,
    );
    assert.ok(!(await vmNames(b)).includes('impostor'));
  });
});
