import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { after, afterEach, before, describe, it } from 'node:test';
import { API, Agent, AgentClient, pathOf, type VmView } from '../../src/agent/index.js';
import { lookUpQemuUser } from '../../src/agent/qemu-user.js';
import { loadMigrationOptions } from '../../src/config/index.js';
import { VmferryError } from '../../src/errors.js';
import { guestRamMiB } from '../../src/guest/index.js';
import { packageRoot } from '../../src/paths.js';
import { EXAMPLE_SETTINGS } from '../../src/policy/settings.fixture.js';
import { createTestPki, type TestPki, type TlsIdentity } from '../../src/pki/index.js';
import { runFiles, type VmSpecDraft } from '../../src/qemu/index.js';
import { guestSpec, guestVmSpec, startLoopbackAgent, waitFor } from './helpers.js';

const isRoot = process.getuid?.() === 0;

async function failure(call: Promise<unknown>): Promise<{ code: string; message: string; status: number }> {
  try {
    await call;
  } catch (err) {
    if (err instanceof VmferryError) return { code: err.code, message: err.message, status: err.httpStatus };
    throw err;
  }
  throw new Error('the call succeeded');
}

/**
 * A running agent keeps its VMs in bounds: files only from its directories,
 * QEMU sandboxed and (the agent being root) not root, memory and vCPUs within
 * the host, and a bounded number of incoming migrations and connections.
 */
describe('confined VMs and bounded agents (a real agent, real QEMU under TCG)', { timeout: 300_000 }, () => {
  let pki: TestPki;
  let dir: string;
  let disks: string;
  let agent: Agent;
  let address: string;
  let operator: TlsIdentity;
  let hostB: TlsIdentity;
  const logs: string[] = [];
  const clients: AgentClient[] = [];
  const client = (identity: TlsIdentity): AgentClient => {
    const c = new AgentClient(address, identity);
    clients.push(c);
    return c;
  };
  const memoryLimitMiB = guestRamMiB(64) + 200;

  before(async () => {
    pki = await createTestPki();
    dir = mkdtempSync(join(tmpdir(), 'vmf-confine-e2e-'));
    // QEMU runs as its own user: it must pass through to the agent's state directory.
    chmodSync(dir, 0o711);
    disks = mkdtempSync(join(tmpdir(), 'vmf-disks-'));
    chmodSync(disks, 0o711);
    writeFileSync(
      join(dir, 'nova.conf'),
      `[vmferry]\nmax_vm_memory_mib = ${memoryLimitMiB}\nmax_incoming_migrations = 1\nmax_connections = 8\n`,
    );
    operator = await pki.issue('op', [], 'operator');
    hostB = await pki.issue('host-b');
    ({ agent, address } = await startLoopbackAgent({
      name: 'host-a',
      stateDir: join(dir, 'state'),
      tls: await pki.issue('host-a'),
      migrationOptions: loadMigrationOptions(join(dir, 'nova.conf')),
      diskDirs: [disks],
      log: (line) => void logs.push(line),
    }));
  });

  // Each test's clients go when it ends: their kept-alive connections count against max_connections.
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  after(async () => {
    for (const vm of agent?.registry.list() ?? []) await agent.registry.destroy(vm.spec.name, 2000);
    await agent?.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(disks, { recursive: true, force: true });
    pki?.dispose();
  });

  it('says at start-up where VM files may come from and how QEMU runs', () => {
    const line = logs.find((l) => l.startsWith('VM files from'));
    assert.equal(
      line,
      `VM files from ${realpathSync(join(packageRoot(), 'guest', 'build'))} (images) and ${disks} (disks); ` +
        `QEMU runs sandboxed as ${isRoot ? 'vmferry-qemu' : 'the agent user'}; ` +
        `VMs get up to ${memoryLimitMiB} MiB in all and ${availableParallelism()} vCPUs each`,
    );
    assert.ok(!logs.some((l) => l.includes('test mode')), 'not in test mode');
  });

  it('refuses VM files outside its directories, symlinks and shared memory included', async () => {
    const api = client(operator);
    symlinkSync('/etc/shadow', join(disks, 'innocent.img'));
    const cases: [Partial<VmSpecDraft>, string][] = [
      [
        { boot: { kernel: '/etc/passwd' } },
        'VM evil: boot.kernel /etc/passwd is not in a directory VMs may use',
      ],
      [
        { disks: [{ path: join(disks, 'innocent.img'), format: 'raw', storage: 'shared' }] },
        `VM evil: disks[0].path ${join(disks, 'innocent.img')} (/etc/shadow) is not in a directory VMs may use`,
      ],
      [
        { memoryBackend: { kind: 'file', path: join(disks, 'ram'), share: true } },
        "VM evil: memoryBackend.path: guest memory in a shared file is for vmferry's tests only",
      ],
    ];
    for (const [over, message] of cases) {
      const got = await failure(api.post(pathOf(API.startVm), { ...guestSpec('evil', 64), ...over }));
      assert.equal(got.code, 'VMF_ERR_AUTH', got.message);
      assert.equal(got.status, 403);
      assert.ok(got.message.startsWith(message), got.message);
    }
    assert.deepEqual(agent.registry.list(), []);
  });

  it('starts QEMU sandboxed, as its own user when the agent is root, in a run directory it owns', async () => {
    const view = await client(operator).post<VmView>(pathOf(API.startVm), guestSpec('boxed', 64), {
      timeoutMs: 60_000,
    });
    const status = readFileSync(`/proc/${view.pid}/status`, 'utf8');
    const cmdline = readFileSync(`/proc/${view.pid}/cmdline`, 'utf8').split('\0');
    assert.match(status, /^Seccomp:\t2$/m, 'a seccomp filter is on');
    assert.match(status, /^NoNewPrivs:\t1$/m);
    assert.equal(
      cmdline[cmdline.indexOf('-sandbox') + 1],
      'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    );
    if (isRoot) {
      const user = lookUpQemuUser('vmferry-qemu');
      assert.match(status, new RegExp(`^Uid:\\t${user.uid}\\t${user.uid}\\t${user.uid}\\t${user.uid}$`, 'm'));
      assert.match(status, /^CapEff:\t0+$/m);
      const runDir = agent.registry.runDirOf('boxed');
      for (const path of [runDir, runFiles(runDir).qmpSocket, runFiles(runDir).serialLog])
        assert.equal(statSync(path).uid, user.uid, path);
      const state = statSync(join(dir, 'state'));
      assert.deepEqual([state.uid, state.gid, state.mode & 0o777], [0, user.gid, 0o710]);
      assert.equal(statSync(join(dir, 'state', 'api.sock')).mode & 0o777, 0o600);
    }
  });

  it('refuses a VM beyond the memory left or with more vCPUs than the host has, with 429', async () => {
    const api = client(operator);
    const big = await failure(api.post(pathOf(API.startVm), guestSpec('big', 256)));
    assert.equal(big.status, 429);
    assert.equal(
      big.message,
      `VM big needs ${guestRamMiB(256)} MiB; host-a has ${memoryLimitMiB - guestRamMiB(64)} of its ${memoryLimitMiB} MiB for VMs left ([vmferry] max_vm_memory_mib)`,
    );
    const wide = await failure(
      api.post(pathOf(API.startVm), { ...guestSpec('wide', 16), vcpus: availableParallelism() + 1 }),
    );
    assert.equal(wide.status, 429);
    assert.equal(
      wide.message,
      `VM wide has ${availableParallelism() + 1} vCPUs; host-a has ${availableParallelism()} CPUs`,
    );
  });

  it(
    'refuses a disk QEMU could not write, saying which user and how to fix it',
    { skip: !isRoot && 'not root: QEMU runs as the agent user' },
    async () => {
      writeFileSync(join(disks, 'root-only.img'), Buffer.alloc(1024 * 1024));
      const got = await failure(
        client(operator).post(pathOf(API.startVm), {
          ...guestSpec('disked', 16),
          disks: [{ path: join(disks, 'root-only.img'), format: 'raw', storage: 'shared' }],
        }),
      );
      assert.equal(got.code, 'VMF_ERR_HOST_SETUP');
      assert.match(
        got.message,
        /^VM disked: disks\[0\]\.path: QEMU runs as vmferry-qemu, and vmferry-qemu cannot read and write .*root-only\.img \(owner 0, group 0, mode 6[04]{2}\)$/,
      );
      const user = lookUpQemuUser('vmferry-qemu');
      chownSync(join(disks, 'root-only.img'), user.uid, user.gid);
      await client(operator).post(pathOf(API.startVm), {
        ...guestSpec('disked', 16),
        disks: [{ path: join(disks, 'root-only.img'), format: 'raw', storage: 'shared' }],
      });
      await client(operator).post(pathOf(API.stopVm, { name: 'disked' }), {}, { timeoutMs: 30_000 });
    },
  );

  it('prepares one incoming migration at a time here, refusing the next with 429', async () => {
    const prepare = (name: string) =>
      client(hostB).post<{ tunnelToken?: string }>(
        pathOf(API.prepareIncoming),
        {
          migrationId: randomUUID(),
          sourceHost: 'host-b',
          spec: guestVmSpec(name, 16),
          settings: { ...EXAMPLE_SETTINGS, transport: 'tunnelled', tls: false, channels: 1 },
        },
        { timeoutMs: 60_000 },
      );
    const first = await prepare('in-1');
    assert.ok((first.tunnelToken ?? '').length > 0);
    const second = await failure(prepare('in-2'));
    assert.deepEqual(second, {
      code: 'VMF_ERR_LIMIT',
      status: 429,
      message: 'host-a receives 1 migration(s) already, as many as max_incoming_migrations = 1 allows',
    });
    assert.ok(!agent.registry.has('in-2'));
  });

  it('answers 503 past its connection limit and closes connections past twice it, then serves again', async () => {
    const port = Number(new URL(address).port);
    const idle: TLSSocket[] = [];
    const open = (): Promise<TLSSocket> =>
      new Promise((resolve, reject) => {
        const s = connect({
          host: '127.0.0.1',
          port,
          ...operator,
          servername: 'host-a',
          checkServerIdentity: () => undefined,
        });
        s.once('secureConnect', () => resolve(s));
        s.once('error', reject);
      });
    try {
      // The agent counts a connection until it sees it closed: wait for the earlier tests' to go.
      await waitFor('connections of earlier tests to close', async () => {
        const probe = new AgentClient(address, operator);
        try {
          return await probe.get(pathOf(API.vms)).then(
            () => true,
            () => undefined,
          );
        } finally {
          probe.close();
        }
      });
      for (let i = 0; i < 8; i++) idle.push(await open());
      const over = await failure(client(operator).get(pathOf(API.vms)));
      assert.equal(over.code, 'VMF_ERR_UNAVAILABLE');
      assert.equal(over.status, 503);
      assert.match(
        over.message,
        /^the agent has \d+ connections open here, over its limit \(\[vmferry\] max_connections\)$/,
      );
      for (let i = 0; i < 8; i++) idle.push(await open());
      const dropped = await failure(client(operator).get(pathOf(API.vms)));
      assert.equal(dropped.code, 'VMF_ERR_PEER', dropped.message);
      // The worker reports the drop to the agent's log a moment after the client saw the connection end.
      await waitFor('the dropped connection in the log', () =>
        logs.find((l) => l.includes('"over-connection-limit"') && l.includes('"dropped":true')),
      );
    } finally {
      for (const s of idle) s.destroy();
    }
    await waitFor('the agent to serve again', async () => {
      const vms = await client(operator)
        .get<{ vms: VmView[] }>(pathOf(API.vms))
        .catch(() => undefined);
      return vms?.vms;
    });
  });
});
