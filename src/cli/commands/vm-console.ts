import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { ConsoleChunk } from '../../agent/index.js';
import { UsageError, VmferryError } from '../../errors.js';
import { connectAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import { printJson, type CliIo } from '../io.js';

interface ConsoleFlags extends AgentConnectionFlags {
  follow?: boolean;
  lines?: string;
  json?: boolean;
}

/** What GET /v1/vms/NAME/console answers: a piece of the console, and who runs the VM. */
export interface ConsoleReply extends ConsoleChunk {
  vm: string;
  host: string;
}

const FOLLOW_POLL_MS = 500;

/** `vmferry vm console NAME [--follow] [--lines N]`: the guest's serial output, from whichever host runs it. */
export function registerVmConsole(vm: Command, io: CliIo): void {
  withAgentOptions(
    vm
      .command('console')
      .argument('<name>')
      .description("print the guest's serial console, from whichever host runs it now")
      .option('-f, --follow', 'keep printing what the guest writes, across migrations (Ctrl-C ends)')
      .option('-n, --lines <n>', 'only the last N lines')
      .option('--json', 'print {vm, host, text, start, end} (not with --follow)'),
  ).action(async (name: string, flags: ConsoleFlags) => {
    if (flags.lines !== undefined && !/^\d+$/.test(flags.lines)) {
      throw new UsageError(`--lines must be a whole number, got ${JSON.stringify(flags.lines)}`);
    }
    if (flags.json === true && flags.follow === true) throw new UsageError('--json and --follow do not mix');
    const client = await connectAgent(io, flags);
    const path = (query: string): string => `/v1/vms/${encodeURIComponent(name)}/console?${query}`;
    try {
      let chunk = await client.get<ConsoleReply>(
        path(flags.lines !== undefined ? `lines=${flags.lines}` : ''),
      );
      if (flags.json === true) {
        printJson(io, chunk);
        return;
      }
      io.stdout.write(Buffer.from(chunk.text, 'latin1'));
      let missing = 0;
      while (flags.follow === true && !io.signal.aborted) {
        await sleep(FOLLOW_POLL_MS, undefined, { signal: io.signal }).catch(() => undefined);
        if (io.signal.aborted) break;
        try {
          chunk = await client.get<ConsoleReply>(path(`after=${chunk.end}`));
          missing = 0;
        } catch (err) {
          // For a moment during a hand-over neither host may claim the VM.
          if (!(err instanceof VmferryError && err.code === 'VMF_ERR_NOT_FOUND') || ++missing > 10) throw err;
          continue;
        }
        io.stdout.write(Buffer.from(chunk.text, 'latin1'));
      }
    } finally {
      client.close();
    }
  });
}
