import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { configCommand } from './config.js';
import { planCommand } from './plan.js';

/** A CLI command module: it adds its (sub)commands to the program. */
export interface CommandModule {
  readonly name: string;
  register(program: Command, io: CliIo): void;
}

/** Every command vmferry has, in the order `--help` lists them. */
export const commands: readonly CommandModule[] = [configCommand, planCommand];
