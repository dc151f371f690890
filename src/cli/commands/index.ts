import type { CommandModule } from '../command.js';
import { agentCommand } from './agent.js';
import { caCommand } from './ca.js';
import { configCommand } from './config.js';
import { dashboardCommand } from './dashboard.js';
import { demoCommand } from './demo.js';
import { hostCommand } from './host.js';
import { migrateCommand, migrationCommand } from './migrate.js';
import { planCommand } from './plan.js';
import { vmCommand } from './vm.js';

export type { CommandModule } from '../command.js';

/** Every command vmferry has, in the order `--help` lists them. */
export const commands: readonly CommandModule[] = [
  demoCommand,
  agentCommand,
  vmCommand,
  migrateCommand,
  migrationCommand,
  dashboardCommand,
  planCommand,
  configCommand,
  hostCommand,
  caCommand,
];
