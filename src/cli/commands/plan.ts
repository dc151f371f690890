import { Option, type Command } from 'commander';
import { ConfigError, UsageError } from '../../errors.js';
import { CHANNEL_RANGE, planMigration, type MigrationPlan, type Transport } from '../../policy/index.js';
import { FULL_CAPABILITIES, type HostCapabilities } from '../../qemu/index.js';
import { withAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import { oneOf, positiveNumber, repeated, wholeNumber } from '../arg-parsers.js';
import { printJson, printLines, type CliIo } from '../io.js';
import { DEFAULT_NOVA_CONF, loadConfigFile } from './config.js';
import type { CommandModule } from '../command.js';

type BooleanCapability = Exclude<keyof HostCapabilities, 'cpus' | 'qemuVersion' | 'tunnelRelay'>;

const CAPABILITY_KEYS: Record<string, BooleanCapability> = {
  'native-tls': 'nativeTls',
  multifd: 'multifd',
  postcopy: 'postcopy',
  'auto-converge': 'autoConverge',
};

/** Parses `native-tls=no,multifd=yes,cpus=2`; keys not named keep QEMU 7.2's full set. */
export function parseCapabilities(spec: string): HostCapabilities {
  const caps: Record<BooleanCapability, boolean> & { cpus?: number } = { ...FULL_CAPABILITIES };
  for (const part of spec.split(',')) {
    if (part.trim() === '') continue;
    const [rawKey, rawValue = ''] = part.split('=', 2).map((s) => s.trim());
    if (rawKey === 'cpus') {
      const n = Number(rawValue);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`cpus=${rawValue}: use a whole number >= 1`);
      caps.cpus = n;
      continue;
    }
    const key = CAPABILITY_KEYS[rawKey ?? ''];
    if (key === undefined) {
      throw new UsageError(
        `unknown capability "${rawKey}"; known: ${[...Object.keys(CAPABILITY_KEYS), 'cpus'].join(', ')}`,
      );
    }
    if (/^(yes|true|1|on)$/i.test(rawValue)) caps[key] = true;
    else if (/^(no|false|0|off)$/i.test(rawValue)) caps[key] = false;
    else throw new UsageError(`${rawKey}=${rawValue}: use yes or no`);
  }
  return caps;
}

interface PlanFlags extends AgentConnectionFlags {
  to?: string;
  config: string;
  block?: boolean;
  memoryMib: number;
  diskGib: number[];
  source: HostCapabilities;
  dest: HostCapabilities;
  transport?: Transport;
  channels?: number;
  bandwidth?: number;
  json?: boolean;
}

function describe(plan: MigrationPlan, memoryMiB: number): string[] {
  const enc = { 'qemu-tls': 'QEMU TLS', 'agent-tls': 'TLS between the agents', none: 'CLEAR TEXT' }[
    plan.encryption
  ];
  const steps = plan.downtimeSteps.map(([s, ms]) => `${ms} ms@${s}s`).join(', ');
  return [
    `plan: ${plan.kind} migration of ${memoryMiB} MiB (${plan.dataGiB} GiB to move)`,
    `  transport       ${plan.transport} (${enc})${plan.tunnel === 'naive' ? ', naive tunnel' : ''}`,
    `  channels        ${plan.channels}${plan.channels === 1 ? ' (no multifd)' : ' (multifd)'}`,
    `  post-copy       ${plan.postCopy ? 'on' : 'off'}`,
    `  auto-converge   ${plan.autoConverge ? 'on' : 'off'}`,
    `  flags           ${plan.flags.join(' ')}`,
    `  downtime steps  ${steps}`,
    `  timeout         ${plan.completionTimeoutSeconds === 0 ? 'none' : `${plan.completionTimeoutSeconds} s, then ${plan.timeoutAction}`}`,
    `  bandwidth       ${plan.bandwidthMiBps === 0 ? 'unlimited' : `${plan.bandwidthMiBps} MiB/s`} (QEMU max-bandwidth ${plan.qemuMaxBandwidthBytes} bytes/s)`,
    `  stall timeout   ${plan.stallTimeoutSeconds === 0 ? 'off' : `${plan.stallTimeoutSeconds} s`}`,
    ...(plan.kind === 'block'
      ? [
          `  disk stall      ${plan.diskStallTimeoutSeconds === 0 ? 'off' : `${plan.diskStallTimeoutSeconds} s`}`,
        ]
      : []),
    ...(plan.relayWorkers === undefined
      ? []
      : [`  relay workers   ${plan.relayWorkers} on the source agent`]),
    'why:',
    ...plan.reasons.map((r) => `  ${r.decision}: ${r.message}`),
  ];
}

/** --to: the plan the agent would make to that peer, with the figures it compared. */
async function runAgentPlan(io: CliIo, flags: PlanFlags & { to: string }): Promise<void> {
  await withAgent(io, flags, async (agent) => {
    const plan = await agent.plan({ to: flags.to, memoryMiB: flags.memoryMib });
    if (flags.json === true) {
      printJson(io, plan);
      return;
    }
    const f = plan.figures;
    const line = (what: string, pair: typeof f.calibration): string[] =>
      pair === undefined
        ? []
        : [
            `  ${what}: ${(['nativeTls', 'tunnelled'] as const)
              .filter((t) => pair[t] !== undefined)
              .map(
                (t) =>
                  `${t === 'nativeTls' ? 'native TLS' : 'tunnel'} ${pair[t]?.gbps ?? 0} Gbit/s (${pair[t]?.date ?? ''})`,
              )
              .join(', ')}`,
          ];
    printLines(io, [
      ...describe(plan, flags.memoryMib),
      'figures to this peer:',
      ...line('calibration', f.calibration),
      ...line('past migrations', f.migrations),
      ...(f.calibration === undefined && f.migrations === undefined
        ? ['  none yet (vmferry host calibrate --peer)']
        : []),
    ]);
  });
}

async function runPlan(io: CliIo, flags: PlanFlags): Promise<void> {
  if (flags.to !== undefined) {
    await runAgentPlan(io, { ...flags, to: flags.to });
    return;
  }
  const check = await loadConfigFile(flags.config);
  const first = check.errors[0];
  if (check.options === null || first !== undefined) {
    throw new ConfigError(
      `${check.errors.length} error(s) in the configuration; first: ${first?.message ?? 'unreadable'}`,
      { file: flags.config, line: first?.line, option: first?.option },
      { hint: `run \`vmferry config check ${flags.config}\`` },
    );
  }
  const kind = flags.block === true ? 'block' : 'live';
  if (kind === 'live' && flags.diskGib.length > 0) {
    throw new UsageError(
      '--disk-gib counts only for --block: a live migration on shared storage copies no disk',
    );
  }
  const plan = planMigration({
    options: check.options,
    kind,
    memoryMiB: flags.memoryMib,
    disksGiB: flags.diskGib,
    source: flags.source,
    destination: flags.dest,
    overrides: {
      ...(flags.transport === undefined ? {} : { transport: flags.transport }),
      ...(flags.channels === undefined ? {} : { channels: flags.channels }),
      ...(flags.bandwidth === undefined ? {} : { bandwidthMiBps: flags.bandwidth }),
    },
  });
  if (flags.json === true) printJson(io, plan);
  else printLines(io, describe(plan, flags.memoryMib));
}

export const planCommand: CommandModule = {
  name: 'plan',
  register(program: Command, io: CliIo): void {
    const plan = program
      .command('plan')
      .description(
        'show how a migration would run with this nova.conf and these hosts, and why; with --to, the plan the agent ' +
          '(--agent) would make to that peer with its own configuration, both hosts and its transport figures',
      )
      .option(
        '--to <address>',
        'ask the agent for its plan to this peer (ignores --config, --source, --dest)',
      )
      .option('--config <file>', 'the nova.conf to read', DEFAULT_NOVA_CONF)
      .option('--block', 'block migration (local disks are copied)')
      .option('--memory-mib <n>', 'guest memory in MiB', positiveNumber('--memory-mib'), 1024)
      .addOption(
        new Option('--disk-gib <n>', 'size of a local disk in GiB (repeat per disk; --block only)')
          .argParser(repeated(positiveNumber('--disk-gib')))
          .default([], 'none'),
      )
      .addOption(
        new Option('--source <caps>', 'source host capabilities, e.g. native-tls=no,multifd=yes')
          .argParser(parseCapabilities)
          .default(FULL_CAPABILITIES, 'native-tls,multifd,postcopy,auto-converge all yes'),
      )
      .addOption(
        new Option('--dest <caps>', 'destination host capabilities (same keys as --source)')
          .argParser(parseCapabilities)
          .default(FULL_CAPABILITIES, 'all yes'),
      )
      .option(
        '--transport <t>',
        'override: native or tunnelled',
        oneOf('--transport', ['native', 'tunnelled'] as const),
      )
      .option(
        '--channels <n>',
        `override: multifd channels (${CHANNEL_RANGE.min}-${CHANNEL_RANGE.max})`,
        wholeNumber('--channels'),
      )
      .option('--bandwidth <mibs>', 'override: MiB/s, 0 = unlimited', wholeNumber('--bandwidth'))
      .option('--json', 'print the plan as JSON');
    withAgentOptions(plan).action((flags: PlanFlags) => runPlan(io, flags));
  },
};
