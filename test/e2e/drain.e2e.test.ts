import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AgentApi, type HostSummary, type MigrationView } from '../../src/agent/index.js';
import { VmferryError } from '../../src/errors.js';
import { TwoHostLab, canUseNetns, type LabHostKey } from '../../src/lab/index.js';
import type { DrainJob } from '../../src/maintenance/index.js';
import { guestSpec, runCli, waitFor } from './helpers.js';

/** The most intervals [from, to] that overlap at one time. */
function maxOverlap(intervals: readonly [number, number][]): number {
  const points = intervals.flatMap(([from, to]) => [
    [from, 1],
    [to, -1],
  ]);
  // Ends before starts at the same instant: back-to-back is not overlapping.
  points.sort((x, y) => (x[0] ?? 0) - (y[0] ?? 0) || (x[1] ?? 0) - (y[1] ?? 0));
  let now = 0;
  let most = 0;
  for (const [, d] of points) {
    now += d ?? 0;
    most = Math.max(most, now);
  }
  return most;
}

/**
 * Host maintenance on a three-host lab (TCG): drains with limits, placement and a
 * restart of the draining agent, each VM's own verifier checking it arrived whole.
 */
describe(
  'draining a host: limits, placement, maintenance and an agent restart (three hosts, real agents, TCG)',
  { skip: canUseNetns() ? false : 'needs root: three hosts are three network namespaces' },
  () => {
    let lab: TwoHostLab;
    const api = (key: LabHostKey): AgentApi => new AgentApi(lab.client(key));
    // C may send VMs to A only: the last test asks it to send one to B.
    const conf = (key: LabHostKey, extra = ''): string => {
      const others = lab.keys
        .filter((k) => k !== key && !(key === 'c' && k === 'b'))
        .map((k) => lab.agent(k).address);
      return `[DEFAULT]\nmax_concurrent_live_migrations = 3\n${extra}[vmferry]\nmax_incoming_migrations = 1\npeers = ${others.join(', ')}\n`;
    };

    before(async () => {
      lab = await TwoHostLab.create({ hosts: 3, accel: 'tcg', prefix: 'vmd', subnet: 90 });
      for (const key of lab.keys) lab.setNovaConf(key, conf(key));
      await lab.start();
    });
    after(async () => {
      await lab?.close();
    });

    async function startGuests(key: LabHostKey, names: string[]): Promise<void> {
      for (const name of names) await api(key).startVm(guestSpec(name, 16, 1, 8));
      for (const name of names) {
        const h = await api(key).vmHealth(name, { minOk: 1, waitMs: 30_000 });
        assert.equal(h.state, 'ok', `${name}: ${h.reason}`);
      }
    }

    /** Where each VM runs now, by host; a VM on two hosts would show twice. */
    async function placement(): Promise<Map<string, LabHostKey[]>> {
      const where = new Map<string, LabHostKey[]>();
      for (const key of lab.keys) {
        for (const vm of await api(key).vms()) where.set(vm.name, [...(where.get(vm.name) ?? []), key]);
      }
      return where;
    }

    async function restart(key: LabHostKey, extra = ''): Promise<void> {
      lab.setNovaConf(key, conf(key, extra));
      await lab.stopAgent(key);
      await lab.startAgent(key);
    }

    async function waitForDrain(key: LabHostKey, id: string): Promise<DrainJob> {
      return waitFor(
        `drain ${id} to end`,
        async () => {
          const job = await api(key).drain(id);
          return job.state === 'running' ? undefined : job;
        },
        240_000,
      );
    }

    it('a dry run places the VMs and says why a host in maintenance is passed over; nothing moves', async () => {
      await startGuests('a', ['g1', 'g2', 'g3', 'g4']);
      await api('c').setMaintenance(true);
      const r = await runCli(['host', 'drain', '--dry-run'], lab.cliEnv('a'));
      assert.equal(r.code, 0, r.stderr);
      for (const g of ['g1', 'g2', 'g3', 'g4'])
        assert.match(r.stdout, new RegExp(`\\n  ${g} \\(\\d+ MiB\\) -> host-b\\n`));
      assert.match(r.stdout, /host-c: in maintenance mode/);
      assert.equal((await api('a').host()).maintenance, false, 'a dry run leaves maintenance alone');
      assert.equal((await api('a').vms()).length, 4);
      await api('c').setMaintenance(false);
    });

    it('drains four guests with --parallel 2 through a kill -9 of the draining agent: each arrives once, verifying OK, within every limit', async () => {
      const started = await api('a').startDrain({ parallel: 2 });
      assert.ok(!('placements' in started));
      const drainId = started.id;
      assert.equal((await api('a').host()).maintenance, true, 'a drain puts the host in maintenance');
      // Kill the draining agent once the first VM has left and another is on its way.
      await waitFor(
        'one VM moved and one moving',
        async () => {
          const job = await api('a').drain(drainId);
          const done = job.items.filter((i) => i.status === 'completed').length;
          return done >= 1 && job.items.some((i) => i.status === 'migrating') ? true : undefined;
        },
        120_000,
      );
      await lab.stopAgent('a', 'SIGKILL');
      await lab.startAgent('a');
      const r = await runCli(['host', 'drain', '--status', '--json'], lab.cliEnv('a'));
      assert.equal(r.code, 0, r.stderr);
      const job = JSON.parse(r.stdout) as DrainJob;
      assert.equal(job.id, drainId);
      assert.equal(job.state, 'completed', JSON.stringify(job.items));
      for (const item of job.items)
        assert.equal(item.status, 'completed', `${item.vm}: ${item.reasons.join('; ')}`);

      const where = await placement();
      for (const g of ['g1', 'g2', 'g3', 'g4']) {
        const hosts = where.get(g) ?? [];
        assert.equal(hosts.length, 1, `${g} runs once, on ${hosts.join(' and ')}`);
        assert.notEqual(hosts[0], 'a');
        const h = await api(hosts[0] ?? 'b').vmHealth(g, { minOk: 2, waitMs: 30_000 });
        assert.equal(h.state, 'ok', `${g} on ${hosts[0]}: ${h.reason}`);
      }
      assert.deepEqual(await api('a').vms(), [], 'A is empty');
      assert.ok(
        new Set([...where.values()].flat()).size === 2,
        'the VMs spread over both destinations (most free memory after reservations)',
      );

      // The journals: never more than 2 of the drain's migrations on A at once, never more than 1 into B or C.
      const spans = async (key: LabHostKey, role: 'source' | 'destination'): Promise<[number, number][]> => {
        const out: [number, number][] = [];
        for (const m of (await api(key).migrations()).filter((x) => x.role === role)) {
          const view: MigrationView = await api(key).migration(m.id);
          // Running from each 'preparing' until it is queued again (destination busy) or ends.
          let from: number | undefined;
          for (const e of view.events) {
            if (e.to === 'preparing') from ??= e.time;
            else if (
              from !== undefined &&
              (e.to === 'queued' || ['completed', 'failed', 'cancelled'].includes(e.to))
            ) {
              out.push([from, e.time]);
              from = undefined;
            }
          }
        }
        return out;
      };
      const outgoing = await spans('a', 'source');
      assert.ok(outgoing.length >= 4, `A journaled ${outgoing.length} migrations`);
      assert.ok(maxOverlap(outgoing) <= 2, `A had ${maxOverlap(outgoing)} outgoing migrations at once`);
      for (const key of ['b', 'c'] as const) {
        const incoming = await spans(key, 'destination');
        assert.ok(maxOverlap(incoming) <= 1, `${key} received ${maxOverlap(incoming)} migrations at once`);
      }
    });

    it('skips a full host and one in maintenance, with the reasons; then drains to the one that has room, nothing to the one in maintenance', async () => {
      const onB = [...(await placement()).entries()].filter(([, h]) => h.includes('b')).map(([vm]) => vm);
      assert.ok(onB.length > 0);
      const total = (await api('a').host()).capacity.totalMiB;
      await api('a').setMaintenance(false);
      await api('c').setMaintenance(true);
      const cIncomingBefore = (await api('c').migrations()).filter((m) => m.role === 'destination').length;
      await restart('a', `reserved_host_memory_mb = ${total}\n`);
      const first = await api('b').startDrain({ parallel: 2 });
      assert.ok(!('placements' in first));
      const failed = await waitForDrain('b', first.id);
      assert.equal(failed.state, 'completed-with-failures');
      for (const item of failed.items) {
        assert.equal(item.status, 'failed');
        const why = item.reasons.join('; ');
        assert.match(
          why,
          /host-a: pre-flight memory: host-a has 0 MiB free for VMs|host-a: not enough memory/,
        );
        assert.match(why, /host-c: in maintenance mode/);
      }
      const table = await runCli(['host', 'drain', '--status'], lab.cliEnv('b'));
      assert.equal(table.code, 1, 'a drain with failures exits 1');
      assert.match(table.stdout, /completed-with-failures/);
      assert.match(table.stdout, /host-c: in maintenance mode/);
      for (const vm of onB) assert.deepEqual((await placement()).get(vm), ['b'], `${vm} stayed on B`);

      await restart('a');
      const second = await api('b').startDrain({ parallel: 2 });
      assert.ok(!('placements' in second));
      const done = await waitForDrain('b', second.id);
      assert.equal(done.state, 'completed', JSON.stringify(done.items));
      for (const vm of onB) assert.deepEqual((await placement()).get(vm), ['a'], `${vm} moved to A`);
      const cIncomingAfter = (await api('c').migrations()).filter((m) => m.role === 'destination').length;
      assert.equal(cIncomingAfter, cIncomingBefore, 'C in maintenance received nothing');
      const hostB: HostSummary = await api('b').host();
      assert.equal(hostB.maintenance, true);
      assert.equal(hostB.vms, 0);
    });

    it('a host sends VMs only to its configured peers: C (peers = A) refuses a migration, a dry run and a drain to B', async () => {
      const onC = [...(await placement()).entries()].filter(([, h]) => h.includes('c')).map(([vm]) => vm);
      const vm = onC[0];
      assert.ok(vm !== undefined, 'a guest of the first drain runs on C');
      const toB = lab.agent('b').address;
      const expected = `${toB} is not one of this agent's peers ([vmferry] peers = ${lab.agent('a').address})`;
      const bMigrationsBefore = (await api('b').migrations()).length;
      const refused = (err: unknown): boolean =>
        err instanceof VmferryError && err.code === 'VMF_ERR_PLAN' && err.message === expected;
      await assert.rejects(api('c').startMigration({ vm, to: toB }), refused);
      await assert.rejects(api('c').plan({ to: toB, memoryMiB: 64 }), refused);
      const dry = await runCli(['migrate', vm, '--to', toB, '--dry-run'], lab.cliEnv('c'));
      assert.equal(dry.code, 1, dry.stdout);
      assert.ok(dry.stderr.includes(expected), dry.stderr);
      const drain = await runCli(['host', 'drain', '--to', toB, '--dry-run'], lab.cliEnv('c'));
      assert.equal(drain.code, 1, drain.stdout);
      assert.ok(drain.stderr.includes(expected), drain.stderr);
      // The peer it has is still a destination: the same dry run to A passes its checks.
      const toA = await runCli(['migrate', vm, '--to', lab.agent('a').address, '--dry-run'], lab.cliEnv('c'));
      assert.equal(toA.code, 0, toA.stdout + toA.stderr);
      assert.deepEqual((await placement()).get(vm), ['c'], `${vm} stayed on C`);
      assert.equal((await api('b').migrations()).length, bMigrationsBefore, 'B was asked nothing');
      const h = await api('c').vmHealth(vm, { minOk: 1, waitMs: 30_000 });
      assert.equal(h.state, 'ok', h.reason);
    });
  },
);
