import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { createSecureContext } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import {
  API,
  Agent,
  AgentClient,
  ROUTE_ROLES,
  mayCall,
  pathOf,
  type RouteName,
} from '../../src/agent/index.js';
import { AuthError, PeerError } from '../../src/errors.js';
import type { IncomingReply } from '../../src/migration/index.js';
import { EXAMPLE_SETTINGS } from '../../src/policy/settings.fixture.js';
import {
  ROLES,
  createTestPki,
  issuedIdentityDir,
  loadTlsIdentity,
  mtlsClientOptions,
  type Role,
  type TestPki,
  type TlsIdentity,
} from '../../src/pki/index.js';
import { openTunnelConnection } from '../../src/transport/tunnel-client.js';
import { guestVmSpec, startLoopbackAgent, waitFor } from './helpers.js';

/**
 * The route table (src/agent/route-access.ts) against a running agent, over its
 * real mutual-TLS port: every route with a certificate of every role, one without
 * a role, one from a foreign CA, an expired one and a revoked one; then the tunnel
 * with each of them, holding the right token for a real prepared migration.
 */

/** A request to a route that changes nothing, and what it gets once let in (its own 2xx or 4xx). */
interface Probe {
  method: 'GET' | 'POST';
  path: string;
  body?: (caller: string) => unknown;
  allowed: 'ok' | 'VMF_ERR_USAGE' | 'VMF_ERR_NOT_FOUND';
}

const GHOST = '00000000-dead-beef-0000-000000000000';

/** Why the agent's TLS refused each broken certificate, as it logs it. */
const HANDSHAKE_REASONS = {
  'foreign CA': /client certificate: UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
  expired: /client certificate: CERT_HAS_EXPIRED/,
  revoked: /client certificate: CERT_REVOKED/,
};

type BrokenKind = keyof typeof HANDSHAKE_REASONS;

/**
 * Opens the tunnel with each broken certificate: every one is refused in the handshake and the
 * reason reaches `logs`. The client's half of the handshake may finish first: it then sees the
 * connection end, not an alert.
 */
async function assertBrokenCertificatesRefused(
  broken: Record<BrokenKind, TlsIdentity>,
  open: (identity: TlsIdentity) => Promise<unknown>,
  logs: string[],
  reasons: Record<BrokenKind, RegExp>,
): Promise<void> {
  const failures = (): string[] => logs.filter((l) => l.includes('tls-handshake-failed'));
  for (const [kind, identity] of Object.entries(broken) as [BrokenKind, TlsIdentity][]) {
    const before = failures().length;
    await assert.rejects(
      open(identity),
      (err: unknown) =>
        (err instanceof AuthError || err instanceof PeerError) &&
        /tunnel connection to 127\.0\.0\.1:\d+ failed|closed the tunnel connection before accepting it/.test(
          err.message,
        ),
      kind,
    );
    const why = await waitFor(`${kind}: the handshake failure in the log`, () => failures().slice(before)[0]);
    assert.match(why, reasons[kind], kind);
  }
}

const PROBES: Record<Exclude<RouteName, 'tunnel'>, Probe> = {
  host: { method: 'GET', path: pathOf(API.host), allowed: 'ok' },
  calibrate: { method: 'POST', path: pathOf(API.calibrate), body: () => ({}), allowed: 'VMF_ERR_USAGE' },
  calibrations: { method: 'GET', path: pathOf(API.calibrations), allowed: 'ok' },
  plan: { method: 'POST', path: pathOf(API.plan), body: () => ({}), allowed: 'VMF_ERR_USAGE' },
  maintenance: { method: 'POST', path: pathOf(API.maintenance), body: () => ({}), allowed: 'VMF_ERR_USAGE' },
  peers: { method: 'GET', path: pathOf(API.peers), allowed: 'ok' },
  // parallel 0 is refused: a probe must never start a drain.
  startDrain: {
    method: 'POST',
    path: pathOf(API.startDrain),
    body: () => ({ parallel: 0 }),
    allowed: 'VMF_ERR_USAGE',
  },
  drains: { method: 'GET', path: pathOf(API.drains), allowed: 'ok' },
  drain: { method: 'GET', path: pathOf(API.drain, { id: GHOST }), allowed: 'VMF_ERR_NOT_FOUND' },
  preflight: { method: 'POST', path: pathOf(API.preflight), body: () => ({}), allowed: 'VMF_ERR_USAGE' },
  vms: { method: 'GET', path: pathOf(API.vms), allowed: 'ok' },
  startVm: { method: 'POST', path: pathOf(API.startVm), body: () => ({}), allowed: 'VMF_ERR_USAGE' },
  vm: { method: 'GET', path: pathOf(API.vm, { name: 'ghost' }), allowed: 'VMF_ERR_NOT_FOUND' },
  vmHealth: { method: 'GET', path: pathOf(API.vmHealth, { name: 'ghost' }), allowed: 'VMF_ERR_NOT_FOUND' },
  vmConsole: { method: 'GET', path: pathOf(API.vmConsole, { name: 'ghost' }), allowed: 'VMF_ERR_NOT_FOUND' },
  stopVm: { method: 'POST', path: pathOf(API.stopVm, { name: 'ghost' }), allowed: 'VMF_ERR_NOT_FOUND' },
  migrations: { method: 'GET', path: pathOf(API.migrations), allowed: 'ok' },
  startMigration: {
    method: 'POST',
    path: pathOf(API.startMigration),
    body: () => ({}),
    allowed: 'VMF_ERR_USAGE',
  },
  dryRun: { method: 'POST', path: pathOf(API.dryRun), body: () => ({}), allowed: 'VMF_ERR_USAGE' },
  migration: { method: 'GET', path: pathOf(API.migration, { id: GHOST }), allowed: 'VMF_ERR_NOT_FOUND' },
  samples: { method: 'GET', path: pathOf(API.samples, { id: GHOST }), allowed: 'ok' },
  abortMigration: {
    method: 'POST',
    path: pathOf(API.abortMigration, { id: GHOST }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  forceComplete: {
    method: 'POST',
    path: pathOf(API.forceComplete, { id: GHOST }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  outgoingState: {
    method: 'GET',
    path: pathOf(API.outgoingState, { id: GHOST }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  // Named as the caller, so the prepare's own check (the source asks for itself) passes; no migrationId.
  prepareIncoming: {
    method: 'POST',
    path: pathOf(API.prepareIncoming),
    body: (caller) => ({ sourceHost: caller }),
    allowed: 'VMF_ERR_USAGE',
  },
  checkDisks: { method: 'POST', path: pathOf(API.checkDisks), body: () => ({}), allowed: 'VMF_ERR_USAGE' },
  resumeIncoming: {
    method: 'POST',
    path: pathOf(API.resumeIncoming, { id: GHOST }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  recoverIncoming: {
    method: 'POST',
    path: pathOf(API.recoverIncoming, { id: GHOST }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  completeIncoming: {
    method: 'POST',
    path: pathOf(API.completeIncoming, { id: GHOST }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  incomingGuest: {
    method: 'GET',
    path: pathOf(API.incomingGuest, { id: GHOST }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  abortIncoming: {
    method: 'POST',
    path: pathOf(API.abortIncoming, { id: GHOST }),
    body: () => ({ reason: 'probe' }),
    allowed: 'VMF_ERR_NOT_FOUND',
  },
  metrics: { method: 'GET', path: pathOf(API.metrics), allowed: 'ok' },
};

/** How a call ended: 'ok' for a 2xx, the error code of a refusal, or 'no answer' when TLS let nothing through. */
interface Outcome {
  code: string;
  message: string;
}

describe('authorization: the route table against a running agent', { timeout: 300_000 }, () => {
  let pki: TestPki;
  let foreignPki: TestPki;
  let stateDir: string;
  let agent: Agent;
  let address: string;
  const logs: string[] = [];
  /** One certificate per role, all named like the source host of the tunnel test (CN host-b). */
  const byRole = {} as Record<Role, TlsIdentity>;
  const broken = {} as Record<BrokenKind, TlsIdentity>;
  let noRole: TlsIdentity;
  const clients: AgentClient[] = [];

  const client = (identity: TlsIdentity): AgentClient => {
    const c = new AgentClient(address, identity);
    clients.push(c);
    return c;
  };

  /** One HTTPS request on a fresh connection with `identity`: /metrics answers text, the rest JSON. */
  const request = (identity: TlsIdentity, probe: Probe, caller: string): Promise<Outcome> =>
    new Promise((resolve) => {
      const body = probe.method === 'POST' ? JSON.stringify(probe.body?.(caller) ?? {}) : undefined;
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: Number(new URL(address).port),
          method: probe.method,
          path: probe.path,
          agent: false,
          ...mtlsClientOptions(identity, { peerName: 'host-a' }),
          headers: body !== undefined ? { 'content-type': 'application/json' } : {},
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve({ code: 'ok', message: '' });
            else {
              const { code, message } = JSON.parse(text) as Outcome;
              resolve({ code, message });
            }
          });
        },
      );
      req.on('error', (err) => resolve({ code: 'no answer', message: err.message }));
      req.end(body);
    });

  before(async () => {
    pki = await createTestPki();
    foreignPki = await createTestPki('foreign-ca');
    for (const role of ROLES) {
      byRole[role] =
        role === 'host'
          ? await pki.issue('host-b')
          : await pki.issueInto(join(pki.dir, 'as', role), 'host-b', role);
    }
    noRole = await pki.issueWithoutRole('host-b');
    broken.expired = await pki.issueExpired('late-op', 'operator');
    await pki.issue('lost-op', [], 'operator');
    const { ca, cert, key } = await loadTlsIdentity(issuedIdentityDir(pki.dir, 'lost-op'));
    await pki.revoke('lost-op');
    broken.revoked = { ca, cert, key };
    // Same name and role as a real operator, and it trusts our CA: only its issuer differs.
    broken['foreign CA'] = { ...(await foreignPki.issue('op', [], 'operator')), ca: pki.ca };
    await pki.issue('host-a');
    const tls = await loadTlsIdentity(issuedIdentityDir(pki.dir, 'host-a'));
    assert.ok(tls.crl !== undefined, "the agent's identity carries the CRL");
    stateDir = mkdtempSync(join(tmpdir(), 'vmf-authz-'));
    ({ agent, address } = await startLoopbackAgent({
      name: 'host-a',
      stateDir,
      tls,
      // The front door's relay: the native one has its own test below.
      tunnelRelay: 'node',
      log: (line) => void logs.push(line),
    }));
    assert.match(address, /^https:\/\/127\.0\.0\.1:\d+$/);
  });

  after(async () => {
    for (const c of clients) c.close();
    await agent?.close();
    for (const vm of agent?.registry.list() ?? []) await agent.registry.destroy(vm.spec.name, 2000);
    rmSync(stateDir, { recursive: true, force: true });
    pki?.dispose();
    foreignPki?.dispose();
  });

  it('lets each role call exactly the routes the table gives it, and refuses the rest with 403', async () => {
    const routes = Object.keys(PROBES) as (keyof typeof PROBES)[];
    for (const role of ROLES) {
      for (const route of routes) {
        const probe = PROBES[route];
        const got = await request(byRole[role], probe, 'host-b');
        const endpoint = API[route];
        if (mayCall(role, route)) {
          assert.equal(got.code, probe.allowed, `${role} ${endpoint}: ${got.message}`);
        } else {
          assert.deepEqual(
            got,
            { code: 'VMF_ERR_AUTH', message: `${role} "host-b" may not call ${endpoint}` },
            `${role} ${endpoint}`,
          );
        }
      }
    }
  });

  it('refuses a certificate without a role on every route, telling its holder to have it issued again', async () => {
    for (const [route, probe] of Object.entries(PROBES)) {
      const endpoint = API[route as keyof typeof PROBES];
      const got = await request(noRole, probe, 'host-b');
      assert.deepEqual(got, {
        code: 'VMF_ERR_AUTH',
        message: `the certificate of "host-b" names no vmferry role (it may not call ${endpoint})`,
      });
    }
  });

  it('lets no foreign, expired or revoked certificate past the TLS handshake, on any route', async () => {
    for (const [kind, identity] of Object.entries(broken) as [keyof typeof broken, TlsIdentity][]) {
      const before = logs.filter((l) => l.includes('tls-handshake-failed')).length;
      for (const [route, probe] of Object.entries(PROBES)) {
        const got = await request(identity, probe, 'op');
        assert.equal(got.code, 'no answer', `${kind} ${route}: ${got.message}`);
      }
      // The workers report handshake failures to the agent's log a moment after the client saw them.
      const failures = await waitFor(`${kind}: a logged handshake failure per attempt`, () => {
        const logged = logs.filter((l) => l.includes('tls-handshake-failed')).slice(before);
        return logged.length >= Object.keys(PROBES).length ? logged : undefined;
      });
      for (const line of failures) assert.match(line, HANDSHAKE_REASONS[kind], `${kind}: ${line}`);
    }
  });

  it('opens the tunnel of a prepared migration to its source host only, not to other roles with the same name and token', async () => {
    // host-b prepares a tunnelled migration to host-a: a real incoming QEMU behind the tunnel.
    const id = randomUUID();
    const prepare = (identity: TlsIdentity): Promise<IncomingReply> =>
      client(identity).post<IncomingReply>(
        pathOf(API.prepareIncoming),
        {
          migrationId: id,
          sourceHost: 'host-b',
          spec: guestVmSpec('tunnel-probe', 32),
          settings: { ...EXAMPLE_SETTINGS, transport: 'tunnelled', tls: false, channels: 1 },
        },
        { timeoutMs: 60_000 },
      );
    for (const role of ['operator', 'viewer', 'metrics'] as const) {
      await assert.rejects(
        prepare(byRole[role]),
        (err: unknown) =>
          err instanceof AuthError && err.message === `${role} "host-b" may not call POST /v1/incoming`,
      );
    }
    assert.deepEqual(agent.registry.list(), [], 'no refused prepare started a QEMU');
    const reply = await prepare(byRole.host);
    const token = reply.tunnelToken ?? '';
    assert.equal(reply.destinationHost, 'host-a');
    assert.ok(token.length >= 32);
    const port = Number(new URL(address).port);
    const open = (identity: TlsIdentity) =>
      openTunnelConnection({
        remote: { host: '127.0.0.1', port },
        secureContext: createSecureContext({ ...identity, minVersion: 'TLSv1.3' }),
        migrationId: id,
        token,
        expectedPeerCommonName: 'host-a',
        timeoutMs: 15_000,
        noDelay: true,
      });
    const refusals = logs.filter((l) => l.includes('tunnel-refused')).length;
    for (const role of ['operator', 'viewer', 'metrics'] as const) {
      await assert.rejects(
        open(byRole[role]),
        (err: unknown) =>
          err instanceof AuthError && /refused the tunnel: 403 .*"tunnel refused"/.test(err.message),
        role,
      );
    }
    await assert.rejects(open(noRole), (err: unknown) => err instanceof AuthError && /403/.test(err.message));
    // The workers report refusals to the agent's log a moment after the client saw them.
    const logged = await waitFor('the 4 refusals in the log', () => {
      const lines = logs.filter((l) => l.includes('tunnel-refused')).slice(refusals);
      return lines.length >= 4 ? lines : undefined;
    });
    assert.equal(logged.length, 4);
    for (const role of ['operator', 'viewer', 'metrics']) {
      assert.ok(
        logged.some((l) => l.includes(`${role} \\"host-b\\" may not open tunnels (host only)`)),
        `${role}: ${logged.join('\n')}`,
      );
    }
    await assertBrokenCertificatesRefused(broken, open, logs, HANDSHAKE_REASONS);
    const tunnel = await open(byRole.host);
    assert.equal(tunnel.socket.authorized, true);
    tunnel.socket.destroy();
    assert.deepEqual(ROUTE_ROLES.tunnel, ['host']);
    await client(byRole.host).post(pathOf(API.abortIncoming, { id }), { reason: 'done probing' });
    await waitFor('the probe VM to be dropped', () =>
      agent.registry.list().length === 0 ? true : undefined,
    );
  });
  it("routes a prepared migration's tunnel through the destination's native relay, which refuses every other role, no role and broken certificates at its own port and logs and counts them like the front door", async () => {
    await pki.issue('host-n');
    const tls = await loadTlsIdentity(issuedIdentityDir(pki.dir, 'host-n'));
    assert.ok(tls.crl !== undefined, "the native relay's identity carries the CRL");
    const nativeDir = mkdtempSync(join(tmpdir(), 'vmf-authz-native-'));
    const nativeLogs: string[] = [];
    const { agent: native, address: nativeAddress } = await startLoopbackAgent({
      name: 'host-n',
      stateDir: nativeDir,
      tls,
      tunnelRelay: 'native',
      log: (line) => void nativeLogs.push(line),
    });
    try {
      assert.deepEqual(native.tunnelRelay, {
        kind: 'native',
        reason: 'the native relay ([vmferry] tunnel_relay = native)',
      });
      const id = randomUUID();
      const nativeClient = new AgentClient(nativeAddress, byRole.host);
      clients.push(nativeClient);
      const reply = await nativeClient.post<IncomingReply>(
        pathOf(API.prepareIncoming),
        {
          migrationId: id,
          sourceHost: 'host-b',
          spec: guestVmSpec('native-probe', 32),
          settings: { ...EXAMPLE_SETTINGS, transport: 'tunnelled', tls: false, channels: 1 },
        },
        { timeoutMs: 60_000 },
      );
      const relayPort = reply.relayPort ?? 0;
      assert.ok(relayPort > 0 && relayPort !== Number(new URL(nativeAddress).port), 'a port of its own');
      const open = (identity: TlsIdentity, token = reply.tunnelToken ?? '') =>
        openTunnelConnection({
          remote: { host: '127.0.0.1', port: relayPort },
          secureContext: createSecureContext({ ...identity, minVersion: 'TLSv1.3' }),
          migrationId: id,
          token,
          expectedPeerCommonName: 'host-n',
          timeoutMs: 15_000,
          noDelay: true,
        });
      const refusedLines = (): string[] => nativeLogs.filter((l) => l.includes('tunnel-refused'));
      for (const role of ['operator', 'viewer', 'metrics'] as const) {
        await assert.rejects(
          open(byRole[role]),
          (err: unknown) =>
            err instanceof AuthError &&
            err.message ===
              `127.0.0.1:${relayPort} refused the tunnel: 403 {"code":"VMF_ERR_AUTH","message":"tunnel refused"}`,
          role,
        );
      }
      await assert.rejects(
        open(noRole),
        (err: unknown) => err instanceof AuthError && /403/.test(err.message),
      );
      await assert.rejects(
        open(byRole.host, 'x'.repeat(43)),
        (err: unknown) => err instanceof AuthError && /403/.test(err.message),
      );
      const logged = await waitFor('the 5 refusals in the log', () =>
        refusedLines().length >= 5 ? refusedLines() : undefined,
      );
      for (const role of ['operator', 'viewer', 'metrics']) {
        assert.ok(
          logged.some(
            (l) =>
              l.includes(`${role} \\"host-b\\" may not open tunnels (host only)`) &&
              l.includes('"relay":"native"'),
          ),
          `${role}: ${logged.join('\n')}`,
        );
      }
      assert.ok(
        logged.some((l) => l.includes('a certificate without a role \\"host-b\\" may not open tunnels')),
      );
      assert.ok(logged.some((l) => l.includes(`wrong tunnel token for migration ${id}`)));
      assert.match((await native.metrics.text()).body, /vmferry_tunnel_refusals_total\{status="403"\} 5/);
      // The system's OpenSSL names a foreign issuer by the missing issuer; Node's, by the leaf's signature.
      await assertBrokenCertificatesRefused(broken, open, nativeLogs, {
        ...HANDSHAKE_REASONS,
        'foreign CA': /client certificate: UNABLE_TO_GET_ISSUER_CERT_LOCALLY/,
      });
      const tunnel = await open(byRole.host);
      assert.equal(tunnel.socket.authorized, true);
      tunnel.socket.destroy();
      await nativeClient.post(pathOf(API.abortIncoming, { id }), {
        reason: 'done probing',
      });
      await waitFor('the probe VM to be dropped', () =>
        native.registry.list().length === 0 ? true : undefined,
      );
    } finally {
      await native.close();
      for (const vm of native.registry.list()) await native.registry.destroy(vm.spec.name, 2000);
      rmSync(nativeDir, { recursive: true, force: true });
    }
  });
});
