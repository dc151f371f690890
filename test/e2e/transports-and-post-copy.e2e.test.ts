import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, VmView } from '../../src/agent/index.js';
import type { MigrationOverrides } from '../../src/policy/index.js';
import { TwoHostLab, type HostKey } from '../../src/lab/index.js';
import { isTerminalMigrationState, type MigrationReport } from '../../src/migration/index.js';
import {
  guestSpec,
  migrationReport,
  vmNames,
  waitFor,
  waitForOkHeartbeats,
  waitUntilTransferring,
} from './helpers.js';

/**
 * The agents' tunnel and QEMU's own transports, end to end with the guest verifying itself.
 * Host b runs the native tunnel relay and host a the TypeScript one, so the tunnel is
 * crossed both ways between the two relays.
 */
describe('each transport moves the guest intact (TCG); tunnels refuse strangers and fail cleanly', () => {
  let lab: TwoHostLab;
  let client: Record<HostKey, AgentClient>;
  let where: HostKey = 'a';

  before(async () => {
    lab = await TwoHostLab.create({
      accel: 'tcg',
      prefix: 'vmt',
      subnet: 50,
      novaConf: {
        a: '[vmferry]\npermit_cleartext = True\ntunnel_relay = node\n',
        b: '[vmferry]\npermit_cleartext = True\ntunnel_relay = native\n',
      },
    });
    await lab.start();
    client = { a: lab.client('a'), b: lab.client('b') };
    await client.a.post('/v1/vms', guestSpec('traveller'), { timeoutMs: 60_000 });
    await waitForOkHeartbeats(client.a, 'traveller', 2);
  });
  after(async () => {
    await lab?.close();
  });

  /**
   * Kills an agent's relay processes, the front door's workers and native relays: every tunnel
   * connection they hold drops (the front door restarts its workers; native relays are per migration).
   */
  function killRelayWorkers(host: HostKey): void {
    const netns = lab.agents[host].netns;
    const pids = execFileSync('pgrep', ['-f', 'relay-worker|vmferry-relay'])
      .toString()
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter(
        (pid) =>
          netns === undefined ||
          execFileSync('ip', ['netns', 'identify', String(pid)])
            .toString()
            .trim() === netns,
      );
    assert.ok(pids.length > 0, 'relay workers found');
    for (const pid of pids) process.kill(pid, 'SIGKILL');
  }

  const cases: [string, Record<string, unknown>, Partial<MigrationReport>][] = [
    [
      'native, clear text (permitted by [vmferry] permit_cleartext)',
      { transport: 'native', tls: false },
      { transport: 'native', tls: false },
    ],
    [
      'native with QEMU TLS on every multifd channel',
      { transport: 'native', tls: true },
      { transport: 'native', tls: true },
    ],
    [
      'tunnelled through the agents (mutual TLS, one connection per channel)',
      { transport: 'tunnelled' },
      { transport: 'tunnelled', tls: true },
    ],
    [
      'tunnelled through the agents the other way (the other relay at each end)',
      { transport: 'tunnelled' },
      { transport: 'tunnelled', tls: true },
    ],
    [
      'tunnelled through native relays at both ends (--relay native)',
      { transport: 'tunnelled', relay: 'native' },
      { transport: 'tunnelled', tls: true },
    ],
    [
      'tunnelled through TypeScript relays at both ends (--relay node)',
      { transport: 'tunnelled', relay: 'node' },
      { transport: 'tunnelled', tls: true },
    ],
  ];
  for (const [title, options, expected] of cases) {
    it(`migrates over ${title}; the guest verifies OK on arrival`, async () => {
      const from = where;
      const to: HostKey = from === 'a' ? 'b' : 'a';
      const before = await client[from].get<VmView>('/v1/vms/traveller');
      // 4 channels whatever the host size: each transport is exercised with multifd.
      const { id } = await client[from].post<{ id: string }>('/v1/migrations', {
        vm: 'traveller',
        to: lab.agents[to].address,
        options: { ...options, channels: 4 },
      });
      const report = await migrationReport(client[from], id);
      assert.equal(report.status, 'completed', report.error);
      for (const [k, v] of Object.entries(expected)) assert.equal(report[k as keyof MigrationReport], v, k);
      assert.equal(report.channels, 4, 'multifd channels');
      assert.equal(report.guest, 'ok', report.guestDetail);
      if (report.transport === 'tunnelled') {
        const override = options.relay as 'native' | 'node' | undefined;
        const relays = { a: override ?? 'node', b: override ?? 'native' } as const;
        assert.ok(
          report.reasons.some((r) =>
            override !== undefined
              ? r === `relay: ${override} at both ends (override)`
              : r.startsWith(`relay: source ${relays[from]}, the `) &&
                r.includes(`; destination ${relays[to]}, the `),
          ),
          report.reasons.join('\n'),
        );
        // And each end really went through the relay it should: the native relay's own events are in the log.
        for (const host of ['a', 'b'] as const) {
          const opened = readFileSync(lab.agents[host].logFile, 'utf8')
            .split('\n')
            .filter((l) => l.includes('tunnel-connection-opened') && l.includes(id));
          assert.ok(opened.length >= 5, `${host} logged its connections of ${id}`);
          const native = opened.filter((l) => /relay\\?":\\?"native/.test(l)).length;
          assert.equal(
            native,
            relays[host] === 'native' ? opened.length : 0,
            `${host}: ${opened.join('\n')}`,
          );
        }
      }
      await waitForOkHeartbeats(client[to], 'traveller', 2, before.guest.lastSeq);
      where = to;
    });
  }

  it('fails cleanly when a tunnel relay dies midway: source running, guest OK, destination cleaned', async () => {
    const from = where;
    const to: HostKey = from === 'a' ? 'b' : 'a';
    const seq = await waitForOkHeartbeats(client[from], 'traveller', 1);
    const { id } = await client[from].post<{ id: string }>('/v1/migrations', {
      vm: 'traveller',
      to: lab.agents[to].address,
      options: { transport: 'tunnelled', bandwidthMiBps: 16 },
    });
    await waitUntilTransferring(client[from], id);
    killRelayWorkers(to);
    const report = await migrationReport(client[from], id);
    assert.equal(report.status, 'failed');
    assert.equal((await client[from].get<VmView>('/v1/vms/traveller')).state, 'running');
    await waitForOkHeartbeats(client[from], 'traveller', 3, seq);
    await waitFor('the destination to drop the VM', async () =>
      (await vmNames(client[to])).includes('traveller') ? undefined : true,
    );
    // The front door replaced its workers: the next migration through it works.
    const again = await client[from].post<{ id: string }>('/v1/migrations', {
      vm: 'traveller',
      to: lab.agents[to].address,
      options: { transport: 'tunnelled' },
    });
    const retry = await migrationReport(client[from], again.id);
    assert.equal(retry.status, 'completed', retry.error);
    assert.equal(retry.guest, 'ok');
    where = to;
  });

  /** Resets the source's TCP connections to the destination other than the agents' own port. */
  function resetMigrationConnections(from: HostKey, to: HostKey): void {
    const netns = lab.agents[from].netns;
    assert.ok(netns !== undefined, 'needs the namespace lab');
    const dest = new URL(lab.agents[to].address);
    execFileSync(
      'ip',
      ['netns', 'exec', netns, 'ss', '-K', 'dst', dest.hostname, 'and', 'dport', '!=', `:${dest.port}`],
      { stdio: 'ignore' },
    );
  }

  const breakers: [string, MigrationOverrides, (from: HostKey, to: HostKey) => void][] = [
    ['the tunnel (its relay workers die)', { transport: 'tunnelled' }, (_from, to) => killRelayWorkers(to)],
    [
      "QEMU's own connection (reset)",
      { transport: 'native', tls: false },
      (from, to) => resetMigrationConnections(from, to),
    ],
  ];
  for (const [what, transport, cut] of breakers) {
    it(`recovers post-copy when ${what} breaks after the switch: resumed over a new connection, guest OK`, async () => {
      const from = where;
      const to: HostKey = from === 'a' ? 'b' : 'a';
      const id = await switchToPostcopy(from, to, transport);
      // The guest now runs on the destination and fetches the rest from the source: cut the stream.
      cut(from, to);
      const report = await migrationReport(client[from], id);
      assert.equal(report.status, 'completed', `${report.error ?? ''}\n${report.events.join('\n')}`);
      assert.ok(
        report.events.some((e) => /post-copy stream broken .*resumed over a new connection/.test(e)),
        report.events.join('\n'),
      );
      assert.equal(report.guest, 'ok', report.guestDetail);
      assert.equal((await client[to].get<VmView>('/v1/vms/traveller')).state, 'running');
      assert.ok(!(await vmNames(client[from])).includes('traveller'));
      where = to;
    });
  }

  /** Starts a post-copy migration of the traveller, capped so post-copy lasts, and waits for the switch. */
  async function switchToPostcopy(
    from: HostKey,
    to: HostKey,
    transport: MigrationOverrides,
  ): Promise<string> {
    const { id } = await client[from].post<{ id: string }>('/v1/migrations', {
      vm: 'traveller',
      to: lab.agents[to].address,
      options: { ...transport, postCopy: true, bandwidthMiBps: 16 },
    });
    await waitUntilTransferring(client[from], id);
    await client[from].post(`/v1/migrations/${id}/force-complete`);
    await waitFor('the switch to post-copy', async () =>
      (await client[from].get<{ state: string }>(`/v1/migrations/${id}`)).state === 'postcopy'
        ? true
        : undefined,
    );
    return id;
  }

  for (const side of ['destination', 'source'] as const) {
    it(`finishes a tunnelled post-copy migration whose ${side} agent is killed and restarted after the switch`, async () => {
      const from = where;
      const to: HostKey = from === 'a' ? 'b' : 'a';
      const id = await switchToPostcopy(from, to, { transport: 'tunnelled' });
      const restarted = side === 'source' ? from : to;
      await lab.stopAgent(restarted, 'SIGKILL');
      await lab.startAgent(restarted);
      const done = await waitFor(
        `${id} to finish on the source`,
        async () => {
          const m = await client[from].get<{ state: string; error: string | null }>(`/v1/migrations/${id}`);
          return isTerminalMigrationState(m.state) ? m : undefined;
        },
        120_000,
      );
      assert.equal(done.state, 'completed', done.error ?? '');
      const events = async (host: HostKey): Promise<string> =>
        (await client[host].get<{ events: { message: string | null }[] }>(`/v1/migrations/${id}`)).events
          .map((e) => e.message ?? '')
          .join('\n');
      const restartNote =
        side === 'source'
          ? /the agent restarted during post-copy; finishing it/
          : /the agent restarted while the migration was in flight; post-copy: the guest runs here, waiting for the source to finish/;
      assert.match(await events(restarted), restartNote);
      assert.equal((await client[to].get<{ state: string }>(`/v1/migrations/${id}`)).state, 'completed');
      assert.equal((await client[to].get<VmView>('/v1/vms/traveller')).state, 'running');
      await waitForOkHeartbeats(client[to], 'traveller', 3);
      assert.ok(!(await vmNames(client[from])).includes('traveller'), 'the source let its copy go');
      where = to;
    });
  }
});
