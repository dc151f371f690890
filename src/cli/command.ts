import type { Command } from 'commander';
import type { CliIo } from './io.js';

/** A CLI command module: it adds its (sub)commands to the program. Listed once in commands/index.ts. */
export interface CommandModule {
  readonly name: string;
  register(program: Command, io: CliIo): void;
}
