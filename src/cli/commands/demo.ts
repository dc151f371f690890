import type { Command } from 'commander';
import { AgentApi } from '../../agent/index.js';
import { MigrationError, UsageError } from '../../errors.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../../guest/index.js';
import { TwoHostLab, type HostKey } from '../../lab/index.js';
import type { MigrationReport } from '../../migration/index.js';
import type { CommandModule } from '../command.js';
import { wholeNumber } from '../arg-parsers.js';
import { reportLines } from '../format.js';
import { printJson, type CliIo } from '../io.js';
import { followMigration, isReport } from './migrate.js';

interface DemoFlags {
  accel: string;
  memoryMib: number;
  dirtyMibps: number;
  json?: boolean;
  keep?: boolean;
}

/** One line of `vmferry demo --json`. */
export interface DemoMigration {
  /** kvm or tcg: what the agents chose (--accel auto) or were given. */
  accelerator: string;
  from: string;
  to: string;
  status: MigrationReport['status'];
  transport: string;
  tls: boolean;
  bytes: number;
  seconds: number;
  gbps: number;
  downtimeMs: number | undefined;
  /** "ok" only when the guest's own verifier reported OK heartbeats after the migration. */
  guest: string;
}

async function runDemo(io: CliIo, flags: DemoFlags): Promise<void> {
  const memMiB = flags.memoryMib;
  const dirty = flags.dirtyMibps;
  const say = (line: string): void => {
    if (flags.json !== true) io.stderr.write(`demo: ${line}\n`);
  };
  const append = guestAppend({ memMiB, dirtyMiBps: dirty });
  const accel = flags.accel;
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg')
    throw new UsageError(`--accel must be auto, kvm or tcg, got ${JSON.stringify(accel)}`);
  const lab = await TwoHostLab.create({ prefix: 'vmfdemo', subnet: 0, keep: flags.keep === true, accel });
  let accelerator = '';
  const migrations: DemoMigration[] = [];
  try {
    say(
      lab.network !== undefined
        ? `two hosts in network namespaces ${lab.network.a.netns} (${lab.network.a.address}) and ${lab.network.b.netns} (${lab.network.b.address}) joined by a veth link`
        : 'two hosts on loopback ports (not root: no network namespaces)',
    );
    await lab.start();
    say(
      `agents up: ${lab.agents.a.name} at ${lab.agents.a.address}, ${lab.agents.b.name} at ${lab.agents.b.address}`,
    );
    const host = await lab.hostSummary('a');
    accelerator = host.accelerator;
    say(`guests run under ${host.accelerator.toUpperCase()}: ${host.acceleratorReason}`);
    const agents = { a: new AgentApi(lab.client('a')), b: new AgentApi(lab.client('b')) };
    await agents.a.startVm({
      name: 'demo-guest',
      memoryMiB: guestRamMiB(memMiB),
      vcpus: 1,
      kernel: guestKernelPath(),
      append,
    });
    say(`booted the self-verifying guest on ${lab.agents.a.name} (${append}); waiting for its heartbeats`);
    await agents.a.vmHealth('demo-guest', { minOk: 3, waitMs: 30_000 });
    const legs: [HostKey, HostKey][] = [
      ['a', 'b'],
      ['b', 'a'],
    ];
    for (const [from, to] of legs) {
      if (io.signal.aborted) break;
      say(`migrating demo-guest ${lab.agents[from].name} -> ${lab.agents[to].name}`);
      const started = await agents[from].startMigration({ vm: 'demo-guest', to: lab.agents[to].address });
      const end = await followMigration(io, agents[from], started.id, { quiet: flags.json === true });
      if (!isReport(end))
        throw new MigrationError(`migration ${end.id} ${end.state} without a report: ${end.message}`);
      const report = end;
      if (flags.json !== true) io.stdout.write(`${reportLines(report).join('\n')}\n\n`);
      migrations.push({
        accelerator,
        from: lab.agents[from].name,
        to: lab.agents[to].name,
        status: report.status,
        transport: report.transport,
        tls: report.tls,
        bytes: report.bytes,
        seconds: report.seconds,
        gbps: report.gbps,
        downtimeMs: report.downtimeMs,
        guest: report.guest,
      });
      if (report.status !== 'completed') {
        io.exitCode = 1;
        break;
      }
    }
  } finally {
    say('cleaning up: agents, QEMU processes, namespaces, files');
    await lab.close();
  }
  if (flags.json === true) printJson(io, { migrations });
  if (migrations.some((m) => m.status !== 'completed' || m.guest !== 'ok')) io.exitCode = 1;
}

export const demoCommand: CommandModule = {
  name: 'demo',
  register(program: Command, io: CliIo): void {
    program
      .command('demo')
      .description(
        'two hosts on this machine, one running self-verifying guest, migrated A -> B -> A with reports',
      )
      .option(
        '--accel <auto|kvm|tcg>',
        'accelerator for both hosts; auto = KVM where a guest runs under it and is not slower than TCG',
        'auto',
      )
      .option('--memory-mib <MiB>', 'memory the guest fills and verifies', wholeNumber('--memory-mib'), 256)
      .option(
        '--dirty-mibps <MiB/s>',
        'rate at which the guest rewrites its memory',
        wholeNumber('--dirty-mibps'),
        16,
      )
      .option('--keep', 'keep the lab directory (logs) after the demo')
      .option('--json', 'print {"migrations":[...]} as JSON')
      .action((flags: DemoFlags) => runDemo(io, flags));
  },
};
