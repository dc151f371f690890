import type { CommandModule } from '../command.js';
import { caCommand } from './ca.js';
import { hostCommand } from './host.js';

export type { CommandModule } from '../command.js';

/** Every command vmferry has, in the order `--help` lists them. */
export const commands: readonly CommandModule[] = [hostCommand, caCommand];
