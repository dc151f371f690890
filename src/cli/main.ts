import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { VmferryError } from '../errors.js';
import { commands } from './commands/index.js';
import type { CliIo } from './io.js';

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** Builds the commander program; exported for tests and for `--help` checks. */
export function buildProgram(io: CliIo): Command {
  const program = new Command('vmferry')
    .description('Live migration of running QEMU virtual machines between hosts, secure and fast.')
    .version(packageVersion(), '-V, --version')
    .option('--debug', 'print stack traces of errors')
    .showHelpAfterError()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();
  for (const command of commands) command.register(program, io);
  return program;
}

/** Runs the CLI with `argv` (as in process.argv) and returns the exit status. */
export async function main(argv: string[], overrides: Partial<CliIo> = {}): Promise<number> {
  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const io: CliIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    exitCode: 0,
    signal: controller.signal,
    ...overrides,
  };
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv);
    return io.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode;
    }
    const debug = argv.includes('--debug');
    if (err instanceof VmferryError) {
      io.stderr.write(`vmferry: error: ${err.message}\n`);
      if (err.hint !== undefined) io.stderr.write(`vmferry: hint: ${err.hint}\n`);
      if (debug && err.stack !== undefined) io.stderr.write(`${err.stack}\n`);
      return io.exitCode !== 0 ? io.exitCode : 1;
    }
    io.stderr.write(
      `vmferry: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return 70;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
