import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { NotFoundError, UsageError } from '../../errors.js';
import { withAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import { wholeNumber } from '../arg-parsers.js';
import { printJson, type CliIo } from '../io.js';

interface ConsoleFlags extends AgentConnectionFlags {
  follow?: boolean;
  lines?: number;
  json?: boolean;
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
      .option('-n, --lines <n>', 'only the last N lines', wholeNumber('--lines'))
      .option('--json', 'print {vm, host, text, start, end} (not with --follow)'),
  ).action(async (name: string, flags: ConsoleFlags) => {
    if (flags.json === true && flags.follow === true) throw new UsageError('--json and --follow do not mix');
    await withAgent(io, flags, async (agent) => {
      let chunk = await agent.vmConsole(name, { lines: flags.lines });
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
          chunk = await agent.vmConsole(name, { after: chunk.end });
          missing = 0;
        } catch (err) {
          // For a moment during a hand-over neither host may claim the VM.
          if (!(err instanceof NotFoundError) || ++missing > 10) throw err;
          continue;
        }
        io.stdout.write(Buffer.from(chunk.text, 'latin1'));
      }
    });
  });
}
