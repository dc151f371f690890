import type { Command } from 'commander';
import { AgentApi, AgentClient } from '../../agent/index.js';
import { DashboardServer, parseDashboardListen } from '../../dashboard/index.js';
import { UsageError } from '../../errors.js';
import { agentAddress, operatorIdentity } from '../agent-connection.js';
import type { CommandModule } from '../command.js';
import { printJson, printLines, type CliIo } from '../io.js';
import { wholeNumberIn } from '../arg-parsers.js';

interface DashboardFlags {
  listen: string;
  agents?: string;
  agent?: string;
  tlsDir?: string;
  intervalMs: number;
  json?: boolean;
}

/** The agents to follow: --agents A,B,... or else the one agent the other commands talk to. */
export function dashboardAgents(io: CliIo, flags: { agents?: string; agent?: string }): string[] {
  if (flags.agents === undefined) return [agentAddress(io, flags)];
  const list = flags.agents
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  if (list.length === 0) throw new UsageError('--agents needs at least one address: URL,URL,...');
  return [...new Set(list)];
}

export const dashboardCommand: CommandModule = {
  name: 'dashboard',
  register(program: Command, io: CliIo): void {
    program
      .command('dashboard')
      .description(
        'a live web page of your hosts, their VMs and every migration (progress, abort, force-complete, charts); loopback only',
      )
      .option('--listen <host:port>', 'where the page is served (loopback only)', '127.0.0.1:8080')
      .option('--agents <addresses>', 'agents to follow, comma-separated (default: --agent / VMFERRY_AGENT)')
      .option('--agent <address>', 'one agent to follow (env VMFERRY_AGENT)')
      .option('--tls-dir <dir>', 'your client identity: ca.pem, cert.pem, key.pem (env VMFERRY_TLS_DIR)')
      .option(
        '--interval-ms <ms>',
        'how often the agents are read',
        wholeNumberIn('--interval-ms', 200, 60_000),
        1000,
      )
      .option('--json', 'print where it listens as JSON')
      .action(async (flags: DashboardFlags) => {
        const listen = parseDashboardListen(flags.listen);
        const { intervalMs } = flags;
        const identity = await operatorIdentity(io, flags);
        const addresses = dashboardAgents(io, flags);
        const agents = addresses.map((address) => ({
          address,
          api: new AgentApi(new AgentClient(address, identity)),
        }));
        const dashboard = await DashboardServer.start({
          listen,
          agents,
          intervalMs,
          log: (line) => io.stderr.write(`${line}\n`),
        });
        try {
          if (flags.json === true) printJson(io, { url: dashboard.url, agents: addresses });
          else printLines(io, [`dashboard at ${dashboard.url} following ${addresses.join(', ')}`]);
          await new Promise<void>((resolve) => {
            if (io.signal.aborted) resolve();
            else io.signal.addEventListener('abort', () => resolve(), { once: true });
          });
        } finally {
          await dashboard.close();
          for (const a of agents) a.api.close();
        }
      });
  },
};
