import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** The repository (package) root, from the compiled location dist/src/paths.js. */
export const packageRoot = fileURLToPath(new URL('../../', import.meta.url));

/** The self-verifying guest workload built by `make -C guest`. */
export const guestImage = join(packageRoot, 'guest', 'build', 'vmferry-guest.elf');
