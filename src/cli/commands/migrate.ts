import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { AgentApi } from '../../agent/index.js';
import { UsageError } from '../../errors.js';
import {
  isTerminalMigrationState,
  type MigrationReport,
  type MigrationState,
} from '../../migration/index.js';
import {
  checkChannels,
  type MigrationOverrides,
  type TimeoutAction,
  type Transport,
} from '../../policy/index.js';
import { withAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import { oneOf, wholeNumber } from '../arg-parsers.js';
import { drawChart } from '../chart-files.js';
import type { CommandModule } from '../command.js';
import { dryRunLines, progressLine, reportLines } from '../format.js';
import { isInteractive, printJson, printLines, type CliIo } from '../io.js';

interface ShowFlags extends AgentConnectionFlags {
  json?: boolean;
  svg?: string;
  html?: string;
}

interface MigrateFlags extends AgentConnectionFlags {
  to?: string;
  abort?: string;
  forceComplete?: string;
  transport?: Transport;
  relay?: 'native' | 'node';
  channels?: number;
  bandwidth?: number;
  completionTimeout?: number;
  timeoutAction?: TimeoutAction;
  autoConverge?: boolean;
  postCopy?: boolean;
  stallTimeout?: number;
  diskStallTimeout?: number;
  /** `--block` alone: true; `--block auto`: 'auto'. */
  block?: true | 'all' | 'auto';
  keepSourceDisks?: boolean;
  detach?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** Per-migration overrides from the command line (flags already parsed). Exported for tests. */
export function overridesFromFlags(flags: MigrateFlags): MigrationOverrides {
  const o: MigrationOverrides = {};
  if (flags.transport !== undefined) o.transport = flags.transport;
  if (flags.relay !== undefined) o.relay = flags.relay;
  if (flags.channels !== undefined) o.channels = checkChannels(flags.channels, '--channels');
  if (flags.bandwidth !== undefined) o.bandwidthMiBps = flags.bandwidth;
  if (flags.completionTimeout !== undefined) o.completionTimeoutSeconds = flags.completionTimeout;
  if (flags.timeoutAction !== undefined) o.timeoutAction = flags.timeoutAction;
  if (flags.autoConverge !== undefined) o.autoConverge = flags.autoConverge;
  if (flags.postCopy !== undefined) o.postCopy = flags.postCopy;
  if (flags.stallTimeout !== undefined) o.stallSeconds = flags.stallTimeout;
  if (flags.block !== undefined) o.block = flags.block === true ? 'all' : flags.block;
  if (flags.keepSourceDisks === true) {
    if (o.block === undefined) throw new UsageError('--keep-source-disks goes with --block');
    o.keepSourceDisks = true;
  }
  if (flags.diskStallTimeout !== undefined) {
    if (o.block === undefined) throw new UsageError('--disk-stall-timeout goes with --block');
    o.diskStallSeconds = flags.diskStallTimeout;
  }
  return o;
}

/**
 * How a migration ended when its agent has no report for it: it was settled or
 * finished by an agent that restarted midway (the process that measured it is gone).
 */
export interface ReportlessEnd {
  id: string;
  state: MigrationState;
  message: string;
}

/**
 * Polls the source agent until the migration ends, drawing progress and printing
 * each state change with its reason; returns the report (or, after an agent
 * restart, how it ended).
 */
export async function followMigration(
  io: CliIo,
  agent: AgentApi,
  id: string,
  options: { quiet: boolean },
): Promise<MigrationReport | ReportlessEnd> {
  const interactive = isInteractive(io) && !options.quiet;
  let lastPlain = 0;
  let lastState: string | undefined;
  let eventsShown = 0;
  for (;;) {
    const view = await agent.migration(id);
    const { events } = view;
    if (!options.quiet) {
      for (const e of events.slice(eventsShown)) {
        if (e.message === null || e.message === '') continue;
        if (interactive) io.stderr.write('\r\x1b[K');
        io.stderr.write(`${e.to}: ${e.message}\n`);
      }
    }
    eventsShown = events.length;
    if (isTerminalMigrationState(view.state)) {
      if (interactive) io.stderr.write('\r\x1b[K');
      if (view.report !== null && view.report !== undefined) return view.report as MigrationReport;
      return { id, state: view.state, message: events.at(-1)?.message ?? view.error ?? view.state };
    }
    const sample = view.live?.sample;
    const state = view.live?.state ?? view.state;
    if (!options.quiet && sample !== undefined) {
      const line = progressLine(sample, state);
      if (interactive) io.stderr.write(`\r\x1b[K${line}`);
      else if (Date.now() - lastPlain >= 2000 || state !== lastState) {
        io.stderr.write(`${line}\n`);
        lastPlain = Date.now();
      }
    }
    lastState = state;
    if (io.signal.aborted) {
      if (interactive) io.stderr.write('\n');
      throw new UsageError(`stopped following migration ${id}; it goes on on the agent`, {
        hint: `vmferry migration show ${id}, or vmferry migrate --abort ${id}`,
      });
    }
    await sleep(interactive ? 250 : 500);
  }
}

/** ", copying disks 0, 1" for a block migration; "" otherwise. */
function copied(s: { disks?: { disk: number; action: string }[] }): string {
  const disks = (s.disks ?? []).filter((d) => d.action === 'copy').map((d) => d.disk);
  return disks.length === 0 ? '' : `, copying disk${disks.length > 1 ? 's' : ''} ${disks.join(', ')}`;
}

/** Whether followMigration ended with a report. */
export function isReport(end: MigrationReport | ReportlessEnd): end is MigrationReport {
  return 'status' in end;
}

/** `vmferry migrate`: abort or force-complete one, or start one (or a dry run) and follow it to its report. */
async function runMigrate(io: CliIo, vm: string | undefined, flags: MigrateFlags): Promise<void> {
  await withAgent(io, flags, async (agent) => {
    if (flags.abort !== undefined || flags.forceComplete !== undefined) {
      const id = flags.abort ?? flags.forceComplete ?? '';
      const action = flags.abort !== undefined ? 'abort' : 'force-complete';
      await (flags.abort !== undefined ? agent.abortMigration(id) : agent.forceComplete(id));
      if (flags.json === true) printJson(io, { id, requested: action });
      else printLines(io, [`${action} requested for migration ${id}`]);
      return;
    }
    if (vm === undefined) throw new UsageError('which VM? usage: vmferry migrate VM --to ADDRESS');
    if (flags.to === undefined) throw new UsageError('--to ADDRESS (the destination agent) is required');
    const overrides = overridesFromFlags(flags);
    if (flags.dryRun === true) {
      const dry = await agent.dryRun({ vm, to: flags.to, options: overrides });
      if (flags.json === true) printJson(io, dry);
      else printLines(io, dryRunLines(dry));
      if (dry.refused !== undefined) io.exitCode = 1;
      return;
    }
    const started = await agent.startMigration({ vm, to: flags.to, options: overrides });
    if (flags.detach === true) {
      if (flags.json === true) printJson(io, started);
      else printLines(io, [started.id]);
      return;
    }
    if (flags.json !== true) {
      const s = started.settings;
      io.stderr.write(
        `migration ${started.id}: ${s.transport}${s.tls ? ' + TLS' : ''}, ${s.channels} channel(s)${copied(s)}\n`,
      );
    }
    const end = await followMigration(io, agent, started.id, { quiet: flags.json === true });
    if (!isReport(end)) {
      // Finished by an agent that restarted midway: no measurements, only the outcome.
      if (flags.json === true) printJson(io, end);
      else printLines(io, [`migration ${end.id} ${end.state}: ${end.message}`]);
      if (end.state !== 'completed') io.exitCode = 1;
      return;
    }
    if (flags.json === true) printJson(io, end);
    else printLines(io, reportLines(end));
    if (end.status !== 'completed') io.exitCode = 1;
  });
}

export const migrateCommand: CommandModule = {
  name: 'migrate',
  register(program: Command, io: CliIo): void {
    withAgentOptions(
      program
        .command('migrate')
        .argument('[vm]', 'the VM to migrate (on the agent given by --agent)')
        .description(
          'live-migrate a running VM to another host, or abort / force-complete a running migration',
        )
        .option('--to <address>', 'destination agent, as the source agent reaches it: https://HOST:PORT')
        .option('--abort <id>', 'abort a running migration (the VM keeps running on the source)')
        .option(
          '--force-complete <id>',
          'force a running migration to finish (post-copy if allowed, else pause the guest)',
        )
        .option(
          '--transport <native|tunnelled>',
          'override the planned transport',
          oneOf('--transport', ['native', 'tunnelled'] as const),
        )
        .option(
          '--relay <native|node>',
          "tunnelled: the relay at both ends for this migration, instead of each agent's [vmferry] tunnel_relay",
          oneOf('--relay', ['native', 'node'] as const),
        )
        .option('--channels <n>', 'override the number of multifd channels', wholeNumber('--channels'))
        .option('--bandwidth <MiB/s>', 'bandwidth cap (0 = unlimited)', wholeNumber('--bandwidth'))
        .option(
          '--completion-timeout <s>',
          'completion timeout in seconds (0 = none)',
          wholeNumber('--completion-timeout'),
        )
        .option(
          '--timeout-action <abort|force_complete>',
          'what the completion timeout does',
          oneOf('--timeout-action', ['abort', 'force_complete'] as const),
        )
        .option('--auto-converge', 'allow CPU throttling')
        .option('--post-copy', 'allow post-copy')
        .option(
          '--stall-timeout <s>',
          'treat no progress for this long as a timeout (0 = off)',
          wholeNumber('--stall-timeout'),
        )
        .option(
          '--block [auto]',
          "block migration: copy the VM's local disks (auto: copy only the disks the destination does not see as the same file)",
          oneOf('--block', ['all', 'auto'] as const),
        )
        .option('--keep-source-disks', "block migration: keep the source's images after the VM moved")
        .option(
          '--disk-stall-timeout <s>',
          'block migration: fail when nothing moves for this long while the disks are mirrored (0 = off)',
          wholeNumber('--disk-stall-timeout'),
        )
        .option('--detach', 'start it and print its id without waiting')
        .option('--dry-run', 'show the plan and a forecast (samples the guest dirty rate) without migrating')
        .option('--json', 'print the report (or the id) as JSON'),
    ).action((vm: string | undefined, flags: MigrateFlags) => runMigrate(io, vm, flags));
  },
};

export const migrationCommand: CommandModule = {
  name: 'migration',
  register(program: Command, io: CliIo): void {
    const migration = program
      .command('migration')
      .description('migrations an agent knows (running and past)');
    withAgentOptions(
      migration.command('list').description('list migrations').option('--json', 'print JSON'),
    ).action(async (flags: AgentConnectionFlags & { json?: boolean }) => {
      await withAgent(io, flags, async (agent) => {
        const migrations = await agent.migrations();
        if (flags.json === true) printJson(io, { migrations });
        else
          printLines(
            io,
            migrations.length === 0
              ? ['no migrations']
              : migrations.map(
                  (m) =>
                    `${m.id}  ${m.vm.padEnd(16)} ${m.role.padEnd(11)} ${m.state.padEnd(10)} ${m.transport.padEnd(9)} peer ${m.peer}  ${new Date(m.startedAt).toISOString()}`,
                ),
          );
      });
    });
    withAgentOptions(
      migration
        .command('show')
        .argument('<id>')
        .description('show a migration: state, events, report; draw its samples as a chart')
        .option('--svg <file>', 'write a chart of its samples and phases on one time axis (SVG)')
        .option('--html <file>', 'write the chart and the state history as a web page')
        .option('--json', 'print JSON'),
    ).action(async (id: string, flags: ShowFlags) => {
      await withAgent(io, flags, async (agent) => {
        if (flags.svg !== undefined || flags.html !== undefined) return drawChart(io, agent, id, flags);
        const view = await agent.migration(id);
        if (flags.json === true) {
          printJson(io, view);
          return;
        }
        const lines = [`migration ${view.id}: ${view.vm} (${view.role}, peer ${view.peer}) ${view.state}`];
        if (view.live?.sample !== undefined)
          lines.push(`  ${progressLine(view.live.sample, view.live.state)}`);
        if (view.error !== null) lines.push(`  error: ${view.error}`);
        for (const e of view.events) {
          lines.push(
            `  ${new Date(e.time).toISOString()}  ${e.from ?? '-'} -> ${e.to}${e.message ? `: ${e.message}` : ''}`,
          );
        }
        if (view.report !== null && view.report !== undefined)
          lines.push(...reportLines(view.report as MigrationReport));
        printLines(io, lines);
      });
    });
  },
};
