import { join } from 'node:path';
import type { Command } from 'commander';
import { Agent, parsePeers, vmFileDirsFrom } from '../../agent/index.js';
import { loadMigrationOptions, type ResolvedOptions } from '../../config/index.js';
import { UsageError, describeError } from '../../errors.js';
import { checkTlsIdentity, loadTlsIdentity, writeQemuTlsCredsDir } from '../../pki/index.js';
import { absolutePath, repeated } from '../arg-parsers.js';
import type { CommandModule } from '../command.js';
import { createAgentLogger, logFunction } from '../../log/index.js';
import type { CliIo } from '../io.js';

interface AgentFlags {
  config?: string;
  name?: string;
  listen?: string;
  stateDir?: string;
  instancesPath?: string;
  tlsDir?: string;
  migrationAddress?: string;
  accel?: string;
  peers?: string;
  qemu: string;
  qemuTls: boolean;
  imageDir?: string[];
  diskDir?: string[];
  testMode?: boolean;
}

/** Splits HOST:PORT (IPv6 in brackets); names the bad value. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) {
    throw new UsageError(`listen address ${JSON.stringify(text)} is not HOST:PORT`, {
      hint: 'for example 198.18.0.1:7700 or [::1]:7700',
    });
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

/** The agent's settings: command-line flags first, then the [vmferry]/[libvirt] options of --config, then defaults. */
export function agentSettings(flags: AgentFlags, options: ResolvedOptions) {
  const tlsDir = flags.tlsDir ?? options['vmferry.tls_dir'].value ?? undefined;
  if (tlsDir === undefined) {
    throw new UsageError('the agent needs its identity: --tls-dir DIR or [vmferry] tls_dir in --config', {
      hint: 'issue one with: vmferry ca issue CA_DIR --name HOST --role host --ip ADDRESS',
    });
  }
  const accel = flags.accel ?? options['vmferry.accel'].value;
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') {
    throw new UsageError(`--accel must be auto, kvm or tcg, got ${JSON.stringify(accel)}`);
  }
  const workers = options['vmferry.workers'].value;
  const stateDir = flags.stateDir ?? options['vmferry.state_dir'].value ?? '/var/lib/vmferry';
  return {
    // Unset: the name in the agent's certificate (peers check it against the certificate).
    name: flags.name ?? options['vmferry.agent_name'].value ?? undefined,
    ...parseListen(flags.listen ?? options['vmferry.listen'].value ?? '0.0.0.0:7700'),
    stateDir,
    instancesPath:
      flags.instancesPath ??
      options['vmferry.instances_path'].value ??
      options['DEFAULT.instances_path'].value ??
      join(stateDir, 'instances'),
    tlsDir,
    migrationAddress:
      flags.migrationAddress ?? options['libvirt.live_migration_inbound_addr'].value ?? undefined,
    accel,
    peers: parsePeers(flags.peers ?? options['vmferry.peers'].value),
    workers: workers > 0 ? workers : undefined,
    vmFileDirs: {
      imageDirs: flags.imageDir ?? vmFileDirsFrom(options).imageDirs,
      diskDirs: flags.diskDir ?? vmFileDirsFrom(options).diskDirs,
    },
    testMode: flags.testMode === true || options['vmferry.test_mode'].value,
  } as const;
}

async function runAgent(io: CliIo, flags: AgentFlags): Promise<void> {
  // What the agent creates is its own (journal, sockets, TLS copies); QEMU's files are given to QEMU's user.
  process.umask(0o077);
  const migrationOptions = loadMigrationOptions(flags.config);
  const settings = agentSettings(flags, migrationOptions);
  const tls = await loadTlsIdentity(settings.tlsDir);
  const name = settings.name ?? checkTlsIdentity(tls).commonName;
  const log = logFunction(
    createAgentLogger({
      host: name,
      level: migrationOptions['vmferry.log_level'].value,
      pretty: io.stderr.isTTY === true,
      colorize: true,
    }),
  );
  let qemuTlsDir: string | undefined;
  if (flags.qemuTls) {
    qemuTlsDir = join(settings.stateDir, 'qemu-tls');
    await writeQemuTlsCredsDir(qemuTlsDir, tls);
  }
  const agent = await Agent.start({
    name,
    listenHost: settings.host,
    listenPort: settings.port,
    stateDir: settings.stateDir,
    instancesPath: settings.instancesPath,
    tls,
    migrationAddress: settings.migrationAddress,
    accel: settings.accel,
    peers: settings.peers,
    workers: settings.workers,
    vmFileDirs: settings.vmFileDirs,
    testMode: settings.testMode,
    qemuBinary: flags.qemu,
    qemuTlsDir,
    migrationOptions,
    log,
  });
  io.stdout.write(`vmferry-agent ready name=${agent.options.name} addresses=${agent.addresses.join(',')}\n`);
  // SIGHUP: read the TLS directory again (a renewed certificate, a new crl.pem) without a restart.
  const reload = (): void => {
    loadTlsIdentity(settings.tlsDir)
      .then((fresh) => agent.reloadTls(fresh))
      .catch((err: unknown) =>
        log(`TLS reload refused, keeping the old identity: ${describeError(err)}`, { level: 'warn' }),
      );
  };
  process.on('SIGHUP', reload);
  try {
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) resolve();
      else io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    process.off('SIGHUP', reload);
  }
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
      .option(
        '--config <nova.conf>',
        'nova.conf: [libvirt] live_migration_* say how to migrate; [vmferry] agent_name, listen, state_dir, tls_dir, accel, workers set the agent',
      )
      .option(
        '--name <name>',
        "this host's name, the CN of its certificate (default: [vmferry] agent_name, else that CN)",
      )
      .option(
        '--listen <host:port>',
        'agent API and tunnel endpoint (default: [vmferry] listen, 0.0.0.0:7700)',
      )
      .option(
        '--state-dir <dir>',
        'VM run directories, journal, sockets (default: [vmferry] state_dir, /var/lib/vmferry)',
      )
      .option(
        '--instances-path <dir>',
        "local disk images (default: [vmferry] instances_path, else nova's [DEFAULT] instances_path, else STATE_DIR/instances)",
      )
      .option(
        '--tls-dir <dir>',
        "this host's identity: ca.pem, cert.pem, key.pem (default: [vmferry] tls_dir)",
      )
      .option(
        '--migration-address <addr>',
        'address incoming native migration streams arrive on (default: [libvirt] live_migration_inbound_addr, else the listen host)',
      )
      .option(
        '--accel <auto|kvm|tcg>',
        'accelerator; auto = KVM only if a probe guest really runs (default: [vmferry] accel)',
      )
      .option(
        '--image-dir <dir>',
        'a directory kernels, initrds and read-only images may come from (repeatable; default: [vmferry] image_dirs)',
        repeated(absolutePath('--image-dir')),
      )
      .option(
        '--disk-dir <dir>',
        'a directory writable VM disks may lie in (repeatable; default: [vmferry] disk_dirs)',
        repeated(absolutePath('--disk-dir')),
      )
      .option(
        '--test-mode',
        "vmferry's tests only: VM specs may map guest RAM from a shared file ([vmferry] test_mode)",
      )
      .option(
        '--peers <urls>',
        'agents this one may send VMs to: https://HOST:PORT,... (default: [vmferry] peers)',
      )
      .option('--qemu <binary>', 'QEMU system emulator', 'qemu-system-x86_64')
      .option('--no-qemu-tls', 'do not give QEMU TLS credentials (disables native TLS)')
      .action((flags: AgentFlags) => runAgent(io, flags));
  },
};
