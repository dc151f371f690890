import assert from 'node:assert/strict';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient, VmView } from '../../src/agent/index.js';
import {
  GuestSerialParser,
  checkLinuxGuest,
  linuxGuestAppend,
  linuxGuestFiles,
  linuxGuestRamMiB,
  writeLinuxGuestBootDisk,
  type GuestHeartbeatEvent,
  type LinuxGuestWorkload,
} from '../../src/guest/index.js';
import { LAB_BRIDGE, TwoHostLab, canUseNetns, type HostKey } from '../../src/lab/index.js';
import type { MigrationReport } from '../../src/migration/index.js';
import { qemuPidsMatching, runCli, tapLink, vmNames, waitForOkHeartbeats } from './helpers.js';

const SUBNET = 72;
const MEM_MIB = 64;

/** The heartbeats in a console's text. */
function heartbeats(text: string): GuestHeartbeatEvent[] {
  return new GuestSerialParser().push(text).filter((e): e is GuestHeartbeatEvent => e.kind === 'heartbeat');
}

const allOk = (h: GuestHeartbeatEvent): boolean =>
  h.status === 'ok' && h.mem === 'ok' && h.disk?.status === 'ok' && h.net === 'ok';

/** Each leg: from, to, transport. A -> B over QEMU's own TLS, back over the agents' tunnel. */
const LEGS: [HostKey, HostKey, 'native' | 'tunnelled'][] = [
  ['a', 'b', 'native'],
  ['b', 'a', 'tunnelled'],
];

describe(
  'a Linux VM from a spec (shared virtio disk, virtio NIC on br0) migrated A -> B -> A, over TLS and over the tunnel',
  { skip: canUseNetns() ? false : 'taps and bridges need root (network namespaces)' },
  () => {
    let lab: TwoHostLab;
    let clients: Record<HostKey, AgentClient>;

    before(async () => {
      checkLinuxGuest();
      lab = await TwoHostLab.create({ prefix: 'vml', subnet: SUBNET });
      await lab.start();
      clients = { a: lab.client('a'), b: lab.client('b') };
    });
    after(async () => {
      await lab?.close();
    });

    /** The spec an operator would write for it: the guest pings host A's bridge address. */
    function linuxSpec(name: string, boot: 'kernel' | 'disk', address: string): Record<string, unknown> {
      const files = linuxGuestFiles();
      const data = join(lab.dir, `${name}-data.raw`);
      writeFileSync(data, '');
      truncateSync(data, 8 << 20);
      lab.giveToQemu(data);
      const workload: LinuxGuestWorkload = {
        memMiB: MEM_MIB,
        dirtyMiBps: 4,
        verifyMiBps: 32,
        disk: boot === 'kernel' ? '/dev/vda' : '/dev/vdb',
        ip: `${address}/24`,
        peer: lab.network?.a.bridge.address,
      };
      const shared = (path: string): Record<string, string> => ({ path, format: 'raw', storage: 'shared' });
      const common = { memoryMiB: linuxGuestRamMiB(MEM_MIB), vcpus: 1, nics: [{ bridge: LAB_BRIDGE }] };
      if (boot === 'kernel') {
        return {
          ...common,
          boot: { kernel: files.kernel, initrd: files.initrd, append: linuxGuestAppend(workload) },
          disks: [shared(data)],
        };
      }
      const bootDisk = join(lab.dir, `${name}-boot.img`);
      writeLinuxGuestBootDisk(bootDisk, linuxGuestAppend(workload));
      lab.giveToQemu(bootDisk);
      return { ...common, boot: { firmware: 'bios', disk: 0 }, disks: [shared(bootDisk), shared(data)] };
    }

    for (const [boot, address] of [
      ['kernel', `198.19.${SUBNET}.10`],
      ['disk', `198.19.${SUBNET}.11`],
    ] as const) {
      it(`booted ${boot === 'kernel' ? 'by -kernel/-initrd' : 'from its disk through SeaBIOS'}: after each leg its console shows heartbeats going on with memory, disk and network OK, and the source keeps no QEMU or tap`, async () => {
        const name = `linux-${boot}`;
        const specFile = join(lab.dir, `${name}.json`);
        writeFileSync(specFile, JSON.stringify(linuxSpec(name, boot, address)));
        const started = await runCli(['vm', 'start', name, '--spec', specFile], lab.cliEnv('a'));
        assert.equal(started.code, 0, started.stderr);
        await waitForOkHeartbeats(clients.a, name, 3);
        try {
          for (const [from, to, transport] of LEGS) {
            const before = await clients[from].get<VmView>(`/v1/vms/${name}`);
            const r = await runCli(
              ['migrate', name, '--to', lab.agents[to].address, '--transport', transport, '--json'],
              lab.cliEnv(from),
            );
            assert.equal(r.code, 0, r.stderr);
            const report = JSON.parse(r.stdout) as MigrationReport;
            assert.equal(report.status, 'completed', report.error);
            assert.deepEqual([report.transport, report.tls], [transport, true]);
            assert.equal(report.guest, 'ok', report.guestDetail);

            assert.ok(!(await vmNames(clients[from])).includes(name));
            assert.deepEqual(await qemuPidsMatching(join(lab.agents[from].stateDir, 'vms', name)), []);
            assert.equal(tapLink(lab, from, before.taps[0] ?? ''), undefined, `no tap left on ${from}`);
            const after = await clients[to].get<VmView>(`/v1/vms/${name}`);
            assert.match(tapLink(lab, to, after.taps[0] ?? '') ?? 'no tap', /master br0/);
            assert.deepEqual(
              [after.spec.machine, after.spec.cpu, after.spec.nics],
              [before.spec.machine, before.spec.cpu, before.spec.nics],
            );

            const lastSeq = await waitForOkHeartbeats(clients[to], name, 3, before.guest.lastSeq);
            const c = await runCli(['vm', 'console', name], lab.cliEnv(to));
            assert.equal(c.code, 0, c.stderr);
            const beats = heartbeats(c.stdout);
            beats.forEach((h, i) => {
              if (i > 0)
                assert.equal(
                  h.seq,
                  beats[i - 1]!.seq + 1,
                  `console: heartbeat ${h.seq} after ${beats[i - 1]!.seq}`,
                );
            });
            const here = beats.filter((h) => h.seq > (before.guest.lastSeq ?? 0) && h.seq <= lastSeq);
            assert.ok(here.length >= 3, `heartbeats printed on ${to}: ${here.length}`);
            assert.ok(here.every(allOk), `on ${to}: ${JSON.stringify(here.filter((h) => !allOk(h)))}`);
          }
        } finally {
          await clients.a.post(`/v1/vms/${name}/stop`).catch(() => undefined);
        }
      });
    }
  },
);
