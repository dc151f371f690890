import type { Command } from 'commander';
import type { AgentApi, DrainPlan } from '../../agent/index.js';
import { NotFoundError } from '../../errors.js';
import { drainProgress, type DrainJob } from '../../maintenance/index.js';
import { wholeNumberIn } from '../arg-parsers.js';
import { withAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import { drainPlanLines, drainTableLines } from '../format.js';
import { printJson, printLines, type CliIo } from '../io.js';

interface DrainFlags extends AgentConnectionFlags {
  to?: string;
  parallel?: number;
  dryRun?: boolean;
  status?: boolean;
  json?: boolean;
}

/** vmferry host drain: maintenance on and every VM moved off, run by the agent as a journaled job. */
export function registerDrain(host: Command, io: CliIo): void {
  withAgentOptions(
    host
      .command('drain')
      .description(
        'put the host in maintenance and move every VM off it (to its peers or --to), a few at a time; the agent runs it, so it survives this command going away',
      )
      .option('--to <urls>', "destinations instead of the agent's peers: https://HOST:PORT,...")
      .option(
        '--parallel <n>',
        'migrations of this drain at once (default 1)',
        wholeNumberIn('--parallel', 1, 64),
      )
      .option('--dry-run', 'print where each VM would go and why, move nothing')
      .option('--status', 'follow the drain already running (or the last one) instead of starting one')
      .option('--json', 'print JSON'),
  ).action(async (flags: DrainFlags) => {
    await withAgent(io, flags, async (agent) => {
      if (flags.status === true) {
        const latest = (await agent.drains())[0];
        if (latest === undefined) throw new NotFoundError('this host has never been drained');
        return finish(io, flags, await follow(io, agent, latest, flags.json === true));
      }
      const to = flags.to
        ?.split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      const started = await agent.startDrain({
        ...(to !== undefined ? { to } : {}),
        ...(flags.parallel !== undefined ? { parallel: flags.parallel } : {}),
        ...(flags.dryRun === true ? { dryRun: true } : {}),
      });
      if (isPlan(started)) {
        if (flags.json === true) printJson(io, started);
        else printLines(io, drainPlanLines(started));
        if (started.placements.some((p) => p.destination === undefined)) io.exitCode = 1;
        return;
      }
      return finish(io, flags, await follow(io, agent, started, flags.json === true));
    });
  });
}

function isPlan(x: DrainJob | DrainPlan): x is DrainPlan {
  return 'placements' in x;
}

function finish(io: CliIo, flags: DrainFlags, job: DrainJob): void {
  if (flags.json === true) printJson(io, job);
  else printLines(io, drainTableLines(job));
  if (job.state !== 'completed') io.exitCode = 1;
}

/** Polls the drain until it ends: a progress line on a terminal, a line per change otherwise. */
async function follow(io: CliIo, agent: AgentApi, start: DrainJob, quiet: boolean): Promise<DrainJob> {
  let job = start;
  let last = '';
  const tty = io.stderr.isTTY === true;
  for (;;) {
    const line = drainProgress(job);
    if (!quiet && line !== last) io.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    last = line;
    if (job.state !== 'running' || io.signal.aborted) break;
    await new Promise((r) => setTimeout(r, 1000));
    job = await agent.drain(job.id);
  }
  if (!quiet && tty) io.stderr.write('\n');
  if (io.signal.aborted && job.state === 'running' && !quiet) {
    io.stderr.write(`the drain goes on in the agent; follow it again with: vmferry host drain --status\n`);
  }
  return job;
}
