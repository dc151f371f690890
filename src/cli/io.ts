import type { Writable } from 'node:stream';

/** Where a command writes, and whether a human is watching. Passed in so tests can capture output. */
export interface CliIo {
  stdout: Writable & { isTTY?: boolean; columns?: number };
  stderr: Writable & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  /** Set by a command that wants a non-zero exit status without throwing. */
  exitCode: number;
  /** Aborted on SIGINT/SIGTERM: long-running commands clean up and return. */
  signal: AbortSignal;
}

export function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLines(io: CliIo, lines: readonly string[]): void {
  if (lines.length > 0) io.stdout.write(`${lines.join('\n')}\n`);
}

/** True when progress may be drawn in place (a terminal, not a pipe or a log). */
export function isInteractive(io: CliIo): boolean {
  return io.stderr.isTTY === true && io.env.TERM !== 'dumb' && io.env.CI === undefined;
}
