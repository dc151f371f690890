import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { checkConfig } from './config-check.js';
import { optionsFrom, type ResolvedOptions } from './resolve-options.js';

/** Reads the operator's nova.conf ([libvirt] and [vmferry]); refuses a file nova would refuse. No file: the defaults. */
export function loadMigrationOptions(file: string | undefined): ResolvedOptions {
  if (file === undefined) return optionsFrom({});
  let content: Buffer;
  try {
    content = readFileSync(file);
  } catch (err) {
    throw new ConfigError(`cannot read: ${err instanceof Error ? err.message : String(err)}`, { file });
  }
  const check = checkConfig(content, file);
  const first = check.errors[0];
  if (first !== undefined) throw first;
  if (check.options === null) throw new ConfigError('cannot be parsed', { file });
  return check.options;
}
