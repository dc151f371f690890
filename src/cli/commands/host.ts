import type { Command } from 'commander';
import { probeHost } from '../../qemu/index.js';
import type { CalibrationResult } from '../../calibration/index.js';
import { withAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import { wholeNumberIn } from '../arg-parsers.js';
import { hostListLines } from '../format.js';
import { registerDrain } from './host-drain.js';
import { UsageError } from '../../errors.js';
import { printJson, printLines, type CliIo } from '../io.js';
import type { CommandModule } from '../command.js';

/** One line per transport of a calibration: Gbit/s and CPU per GiB, or why it failed. */
export function calibrationLines(c: CalibrationResult): string[] {
  const names = { nativeTls: 'native TLS', tunnelled: 'tunnel' } as const;
  return [
    `calibration ${c.id} to ${c.peer} on ${c.date}: ${c.memoryMiB} MiB guest`,
    ...c.runs.map((r) =>
      r.status === 'completed'
        ? `  ${names[r.transport].padEnd(10)} ${r.gbps.toFixed(2)} Gbit/s  ${r.seconds.toFixed(2)} s  ` +
          `${r.cpuSecondsPerGiB === undefined ? '-' : r.cpuSecondsPerGiB.toFixed(2)} CPU s/GiB on this host`
        : `  ${names[r.transport].padEnd(10)} ${r.status}: ${r.error ?? ''}`,
    ),
  ];
}

function registerCalibrate(host: Command, io: CliIo): void {
  withAgentOptions(
    host
      .command('calibrate')
      .description(
        "measure each secure transport (QEMU's TLS, vmferry's tunnel) to a peer with short trial migrations of a " +
          'throwaway guest, and journal the figures the plan compares',
      )
      .requiredOption('--peer <address>', 'the peer agent, as migrations name it: https://HOST:PORT')
      .option(
        '--memory-mib <n>',
        'guest memory to migrate (64-4096)',
        wholeNumberIn('--memory-mib', 64, 4096),
      )
      .option('--runs <n>', 'trial migrations per transport (1-5)', wholeNumberIn('--runs', 1, 5))
      .option('--json', 'print JSON'),
  ).action(
    async (
      opts: { peer: string; memoryMib?: number; runs?: number; json?: boolean } & AgentConnectionFlags,
    ) => {
      await withAgent(io, opts, async (agent) => {
        const result = await agent.calibrate({
          peer: opts.peer,
          ...(opts.memoryMib !== undefined ? { memoryMiB: opts.memoryMib } : {}),
          ...(opts.runs !== undefined ? { runs: opts.runs } : {}),
        });
        if (opts.json === true) printJson(io, result);
        else printLines(io, calibrationLines(result));
      });
    },
  );
}

export const hostCommand: CommandModule = {
  name: 'host',
  register(program: Command, io: CliIo): void {
    const host = program
      .command('host')
      .description('this hypervisor host: QEMU, accelerator, migration features, transport figures');
    registerCalibrate(host, io);
    host
      .command('info')
      .description(
        'probe QEMU on this host: version, accelerator (KVM only if a guest really runs), migration capabilities, TLS',
      )
      .option('--qemu <binary>', 'QEMU system emulator to probe', 'qemu-system-x86_64')
      .option('--tls-creds <dir>', 'check that QEMU loads these tls-creds-x509 credentials')
      .option(
        '--agent <address>',
        'ask a running agent about its host instead of probing here (with --tls-dir)',
      )
      .option('--tls-dir <dir>', 'your client identity, for --agent (env VMFERRY_TLS_DIR)')
      .option('--json', 'print JSON')
      .action(async (opts: { qemu: string; tlsCreds?: string; json?: boolean } & AgentConnectionFlags) => {
        if (opts.agent !== undefined) {
          await withAgent(io, opts, async (agent) => {
            const summary = await agent.host();
            if (opts.json === true) printJson(io, summary);
            else
              printLines(io, [
                `host:          ${summary.name} (QEMU ${summary.qemuVersion})`,
                `accelerator:   ${summary.accelerator} — ${summary.acceleratorReason}`,
                `QEMU TLS:      ${summary.nativeTls ? 'usable (native TLS migrations possible)' : 'not usable'}`,
                `transports:    ${summary.transports.join(', ')}`,
                `multifd ${summary.multifd ? 'yes' : 'no'}, post-copy ${summary.postcopy ? 'yes' : 'no'}, auto-converge ${summary.autoConverge ? 'yes' : 'no'}`,
              ]);
          });
          return;
        }
        const info = await probeHost({ qemuBinary: opts.qemu, tlsCredsDir: opts.tlsCreds });
        if (opts.json === true) {
          printJson(io, info);
          return;
        }
        const tls = !info.tls.supported
          ? 'not built in'
          : info.tls.credentials === undefined
            ? 'supported (no credentials checked; pass --tls-creds DIR)'
            : info.tls.credentials.usable
              ? `usable with ${info.tls.credentials.dir}`
              : `credentials in ${info.tls.credentials.dir} do not load: ${info.tls.credentials.error ?? ''}`;
        printLines(io, [
          `QEMU:          ${info.qemuVersion} (${info.qemuPackage || info.qemuBinary})`,
          `accelerator:   ${info.accelerator} — ${info.acceleratorReason}`,
          `multifd:       ${info.multifd ? 'yes' : 'no'}`,
          `post-copy:     ${info.postcopy ? 'yes' : 'no'}`,
          `auto-converge: ${info.autoConverge ? 'yes' : 'no'}`,
          `QEMU TLS:      ${tls}`,
          `capabilities:  ${info.migrationCapabilities.join(' ')}`,
        ]);
      });
    registerHostList(host, io);
    registerMaintenance(host, io);
    registerDrain(host, io);
  },
};

/** vmferry host list: this host and its peers, as the agent sees them now. */
function registerHostList(host: Command, io: CliIo): void {
  withAgentOptions(
    host
      .command('list')
      .description(
        'this host and its peers ([vmferry] peers): reachable or why not, maintenance, VMs, memory, migrations, QEMU, native TLS',
      )
      .option('--json', 'print JSON'),
  ).action(async (opts: AgentConnectionFlags & { json?: boolean }) => {
    await withAgent(io, opts, async (agent) => {
      const view = await agent.peers();
      if (opts.json === true) printJson(io, view);
      else printLines(io, hostListLines(view));
    });
  });
}

/** vmferry host maintenance on|off. */
function registerMaintenance(host: Command, io: CliIo): void {
  withAgentOptions(
    host
      .command('maintenance')
      .description(
        'maintenance mode on or off: a host in maintenance takes no incoming migration and no new VM',
      )
      .argument('<on|off>')
      .option('--json', 'print JSON'),
  ).action(async (mode: string, opts: AgentConnectionFlags & { json?: boolean }) => {
    if (mode !== 'on' && mode !== 'off')
      throw new UsageError(`maintenance must be on or off, got ${JSON.stringify(mode)}`);
    await withAgent(io, opts, async (agent) => {
      const r = await agent.setMaintenance(mode === 'on');
      if (opts.json === true) printJson(io, r);
      else printLines(io, [`maintenance mode ${r.maintenance ? 'on' : 'off'}`]);
    });
  });
}
