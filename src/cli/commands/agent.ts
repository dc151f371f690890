import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Agent, loadMigrationOptions } from '../../agent/index.js';
import { UsageError } from '../../errors.js';
import { loadTlsIdentity, writeQemuTlsCredsDir } from '../../pki/index.js';
import type { CommandModule } from '../command.js';
import type { CliIo } from '../io.js';

interface AgentFlags {
  name?: string;
  listen: string;
  stateDir: string;
  tlsDir: string;
  migrationAddress?: string;
  accel: string;
  qemu: string;
  qemuTls: boolean;
  config?: string;
}

/** Splits HOST:PORT (IPv6 in brackets); names the bad value. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) {
    throw new UsageError(`--listen ${JSON.stringify(text)} is not HOST:PORT`, {
      hint: 'for example 198.18.0.1:7700 or [::1]:7700',
    });
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

async function runAgent(io: CliIo, flags: AgentFlags): Promise<void> {
  const { host, port } = parseListen(flags.listen);
  if (!['auto', 'kvm', 'tcg'].includes(flags.accel)) {
    throw new UsageError(`--accel must be auto, kvm or tcg, got ${JSON.stringify(flags.accel)}`);
  }
  const migrationOptions = loadMigrationOptions(flags.config);
  const tls = await loadTlsIdentity(flags.tlsDir);
  let qemuTlsDir: string | undefined;
  if (flags.qemuTls) {
    qemuTlsDir = join(flags.stateDir, 'qemu-tls');
    await writeQemuTlsCredsDir(qemuTlsDir, tls);
  }
  const agent = await Agent.start({
    name: flags.name ?? hostname(),
    listenHost: host,
    listenPort: port,
    stateDir: flags.stateDir,
    tls,
    migrationAddress: flags.migrationAddress,
    accel: flags.accel as 'auto' | 'kvm' | 'tcg',
    qemuBinary: flags.qemu,
    qemuTlsDir,
    migrationOptions,
    log: (line) => io.stderr.write(`${new Date().toISOString()} ${line}\n`),
  });
  io.stdout.write(`vmferry-agent ready name=${agent.options.name} addresses=${agent.addresses.join(',')}\n`);
  await new Promise<void>((resolve) => {
    if (io.signal.aborted) resolve();
    else io.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await agent.shutdown();
}

export const agentCommand: CommandModule = {
  name: 'agent',
  register(program: Command, io: CliIo): void {
    program
      .command('agent')
      .description(
        "run the per-host agent: owns this host's VMs and migrates them to and from peer agents (mutual TLS)",
      )
      .option('--name <name>', "this host's name, as in its certificate (default: the host name)")
      .option('--listen <host:port>', 'address of the agent API and tunnel endpoint', '0.0.0.0:7700')
      .option('--state-dir <dir>', 'VM run directories, journal, sockets', '/var/lib/vmferry')
      .requiredOption(
        '--tls-dir <dir>',
        "this host's identity: ca.pem, cert.pem, key.pem (from vmferry ca issue)",
      )
      .option(
        '--migration-address <addr>',
        'address incoming native migration streams arrive on (default: the --listen host)',
      )
      .option('--accel <auto|kvm|tcg>', 'accelerator; auto = KVM only if a probe guest really runs', 'auto')
      .option('--qemu <binary>', 'QEMU system emulator', 'qemu-system-x86_64')
      .option(
        '--config <nova.conf>',
        'nova.conf whose [libvirt] live_migration_* and [vmferry] options say how to migrate',
      )
      .option('--no-qemu-tls', 'do not give QEMU TLS credentials (disables native TLS)')
      .action((flags: AgentFlags) => runAgent(io, flags));
  },
};
