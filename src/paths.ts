import { fileURLToPath } from 'node:url';

/** The repository (package) root, found from this file's compiled place, dist/src/paths.js. */
export function packageRoot(): string {
  return fileURLToPath(new URL('../../', import.meta.url));
}
