import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, MigrationRecord } from '../../src/agent/index.js';
import { PlanError } from '../../src/errors.js';
import { TwoHostLab } from '../../src/lab/index.js';
import type { IncomingReply } from '../../src/migration/index.js';
import { EXAMPLE_SETTINGS } from '../../src/policy/settings.fixture.js';
import {
  issueCertificate,
  loadTlsIdentity,
  qemuTlsCredsObject,
  writeQemuTlsCredsDir,
} from '../../src/pki/index.js';
import { QemuVm } from '../../src/qemu/index.js';
import { guestVmSpec, vmNames, waitFor, waitForOkHeartbeats } from './helpers.js';

/**
 * The destination applies its own transport policy, whatever the source asks:
 * no clear text unless its own permit_cleartext says so, QEMU listening on its
 * migration address only, QEMU's TLS taking the stream from the source host's
 * certificate alone (tls-authz), and the listener gone once the stream arrived.
 * A test QEMU plays the source, so it can present another host's certificate.
 */
describe('destination transport policy (real agents, real QEMU under TCG)', { timeout: 300_000 }, () => {
  let lab: TwoHostLab;
  let b: AgentClient;
  /** B's API with host-a's own certificate: what a real source agent presents. */
  let asHostA: AgentClient;
  const sources: QemuVm[] = [];

  before(async () => {
    lab = await TwoHostLab.create({ useNetns: false, accel: 'tcg' });
    await lab.start();
    b = lab.client('b');
    asHostA = lab.clientWith('b', await loadTlsIdentity(join(lab.dir, 'ca', 'issued', lab.agents.a.name)));
  });

  after(async () => {
    for (const q of sources) await q.stop(2000).catch(() => undefined);
    await lab?.close();
  });

  const prepare = (name: string, settings: Partial<typeof EXAMPLE_SETTINGS>, id = randomUUID()) =>
    asHostA.post<IncomingReply>(
      '/v1/incoming',
      {
        migrationId: id,
        sourceHost: lab.agents.a.name,
        spec: guestVmSpec(name, 32),
        settings: { ...EXAMPLE_SETTINGS, channels: 1, ...settings },
      },
      { timeoutMs: 60_000 },
    );

  /** A QEMU running the same guest as the spec, sending to `uri` over QEMU TLS with `certName`'s certificate. */
  async function sendFrom(certName: string, name: string, uri: string): Promise<QemuVm> {
    const tlsDir = join(lab.dir, `tls-${certName}`);
    await writeQemuTlsCredsDir(tlsDir, await loadTlsIdentity(join(lab.dir, 'ca', 'issued', certName)));
    const source = await QemuVm.launch(guestVmSpec(name, 32), {
      accel: 'tcg',
      runDir: join(lab.dir, `src-${name}`),
    });
    sources.push(source);
    await source.qmp.execute('object-add', qemuTlsCredsObject('tls-out', tlsDir, 'client'));
    await source.qmp.execute('migrate-set-parameters', {
      'tls-creds': 'tls-out',
      'tls-hostname': lab.agents.b.name,
      'max-bandwidth': 1024 * 1024 * 1024,
    });
    await source.qmp.execute('migrate', { uri });
    return source;
  }

  async function sourceOutcome(source: QemuVm): Promise<{ status: string; error: string }> {
    return waitFor('the test source QEMU to finish sending', async () => {
      const m = await source.qmp.execute<{ status: string; 'error-desc'?: string }>('query-migrate');
      return m.status === 'completed' || m.status === 'failed'
        ? { status: m.status, error: m['error-desc'] ?? '' }
        : undefined;
    });
  }

  it('refuses clear text its own permit_cleartext does not allow, preparing nothing', async () => {
    await assert.rejects(
      prepare('clear', { transport: 'native', tls: false }),
      (err: unknown) =>
        err instanceof PlanError &&
        err.message ===
          `pre-flight check failed: transport: ${lab.agents.b.name} does not take guest memory in clear text (its [vmferry] permit_cleartext is off)`,
    );
    assert.deepEqual(await vmNames(b), []);
  });

  it("takes a native TLS stream only from the source host's certificate, then runs the guest and stops listening", async () => {
    await issueCertificate(join(lab.dir, 'ca'), { name: 'host-c', role: 'host', ips: ['127.0.0.1'] });
    const id = randomUUID();
    const reply = await prepare('sent', { transport: 'native', tls: true }, id);
    assert.match(reply.uri ?? '', /^tcp:127\.0\.0\.1:\d+$/, 'QEMU listens on the migration address');
    // Another host of the same CA, connecting first: QEMU's TLS lets it in, tls-authz turns it away.
    const impostor = await sendFrom('host-c', 'stolen', reply.uri ?? '');
    assert.equal((await sourceOutcome(impostor)).status, 'failed');
    const qemuLog = join(lab.agents.b.stateDir, 'vms', 'sent', 'qemu.log');
    await waitFor("B's QEMU to say why it refused", () =>
      readFileSync(qemuLog, 'utf8').includes('TLS x509 authz check for OU=host,CN=host-c is denied')
        ? true
        : undefined,
    );
    assert.equal(
      (await b.get<MigrationRecord>(`/v1/migrations/${id}`)).state,
      'migrating',
      'the copy still waits',
    );
    // The source host's own certificate: accepted, on the same listener.
    const source = await sendFrom(lab.agents.a.name, 'sent', reply.uri ?? '');
    assert.deepEqual(await sourceOutcome(source), { status: 'completed', error: '' });
    await asHostA.post(`/v1/incoming/${id}/complete`, {}, { timeoutMs: 30_000 });
    await waitForOkHeartbeats(b, 'sent', 2);
    const port = Number((reply.uri ?? '').split(':').at(-1));
    const refused = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    assert.equal(refused, 'ECONNREFUSED', "the destination QEMU's migration listener is closed");
    await b.post('/v1/vms/sent/stop');
  });
});
