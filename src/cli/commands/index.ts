import type { CommandModule } from '../command.js';
import { agentCommand } from './agent.js';
import { caCommand } from './ca.js';
import { hostCommand } from './host.js';
import { migrateCommand, migrationCommand } from './migrate.js';
import { vmCommand } from './vm.js';

export type { CommandModule } from '../command.js';

/** Every command vmferry has, in the order `--help` lists them. */
export const commands: readonly CommandModule[] = [
  agentCommand,
  vmCommand,
  migrateCommand,
  migrationCommand,
  hostCommand,
  caCommand,
];
