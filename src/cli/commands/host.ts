import type { Command } from 'commander';
import { probeHost } from '../../qemu/index.js';
import { withAgent, type AgentConnectionFlags } from '../agent-connection.js';
import { printJson, printLines, type CliIo } from '../io.js';
import type { CommandModule } from '../command.js';

export const hostCommand: CommandModule = {
  name: 'host',
  register(program: Command, io: CliIo): void {
    const host = program
      .command('host')
      .description('this hypervisor host: QEMU, accelerator, migration features');
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
  },
};
