import { ConfigError } from '../errors.js';
import { parseIni, type IniDocument } from './ini-parser.js';
import { computeMigrationFlags, type FlagMode } from './migration-flags.js';
import { OPTION_NAMES, findOption } from './option-table.js';
import { describeSource, isSet, resolveOptions, type ResolvedOptions } from './resolve-options.js';
import { typeOptions, type ConfigWarning } from './type-options.js';

/** Everything `vmferry config check` knows about a file. */
export interface ConfigCheck {
  readonly file: string;
  readonly ok: boolean;
  /** Null when the file could not be parsed at all. */
  readonly options: ResolvedOptions | null;
  readonly document: IniDocument | null;
  readonly warnings: readonly ConfigWarning[];
  readonly errors: readonly ConfigError[];
  /** Empty when `ok` is false: nova would not start with this file. */
  readonly flags: {
    readonly mode: FlagMode;
    readonly live: readonly string[];
    readonly block: readonly string[];
  };
}

function lineOf(o: { source: { kind: string; line?: number } }): number | undefined {
  return o.source.kind === 'file' ? o.source.line : undefined;
}

/** Warnings about values that are valid one by one but odd together. */
function lintOptions(o: ResolvedOptions): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  const completion = o['libvirt.live_migration_completion_timeout'];
  const steps = o['libvirt.live_migration_downtime_steps'].value;
  const delay = o['libvirt.live_migration_downtime_delay'].value;
  if (completion.value > 0 && completion.value < steps * delay) {
    warnings.push({
      option: 'libvirt.live_migration_completion_timeout',
      line: lineOf(completion),
      message:
        `the completion timeout (${completion.value} s/GiB) ends before the last downtime step ` +
        `(${steps} steps x ${delay} s/GiB = ${steps * delay} s/GiB); nova advises it be larger`,
    });
  }
  const action = o['libvirt.live_migration_timeout_action'];
  if (action.value === 'force_complete' && completion.value === 0) {
    warnings.push({
      option: 'libvirt.live_migration_timeout_action',
      line: lineOf(action),
      message: 'force_complete never triggers: live_migration_completion_timeout is 0 (no timeout)',
    });
  }
  const uri = o['libvirt.live_migration_uri'];
  if (uri.value !== null && uri.value !== '' && !uri.value.includes('%s')) {
    warnings.push({
      option: 'libvirt.live_migration_uri',
      line: lineOf(uri),
      message: 'live_migration_uri has no "%s" for the destination host; nova would fail to format it',
    });
  }
  const parallel = o['libvirt.live_migration_parallel_connections'];
  const channels = o['vmferry.channels'];
  if (isSet(parallel) && isSet(channels) && parallel.value !== channels.value) {
    warnings.push({
      option: 'vmferry.channels',
      line: lineOf(channels),
      message:
        `[vmferry] channels = ${channels.value} overrides [libvirt] live_migration_parallel_connections = ` +
        `${parallel.value} for vmferry (nova keeps using its own value)`,
    });
  }
  return warnings;
}

/**
 * Parses, types, resolves and computes the flags of a nova.conf. Never throws for bad
 * content: a syntax error ends the check with that single error, type errors are all
 * collected.
 */
export function checkConfig(content: string | Uint8Array, file: string): ConfigCheck {
  let document: IniDocument;
  try {
    document = parseIni(content, file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return {
      file,
      ok: false,
      options: null,
      document: null,
      warnings: [],
      errors: [err],
      flags: { mode: 'current', live: [], block: [] },
    };
  }
  const typed = typeOptions(document);
  const options = resolveOptions(typed);
  const flags = computeMigrationFlags(options);
  const warnings = [...typed.warnings, ...lintOptions(options), ...flags.warnings];
  const errors = [...typed.errors, ...flags.errors];
  const ok = errors.length === 0;
  return {
    file,
    ok,
    options,
    document,
    warnings,
    errors,
    flags: ok
      ? { mode: flags.mode, live: flags.live, block: flags.block }
      : { mode: flags.mode, live: [], block: [] },
  };
}

/** The stable `--json` shape of `vmferry config check`. */
export function configCheckJson(check: ConfigCheck): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  if (check.options !== null) {
    for (const name of OPTION_NAMES) {
      const opt = check.options[name];
      // A removed option is only worth showing when the file still sets it.
      if (findOption(name)?.removed !== undefined && !isSet(opt)) continue;
      options[name] = opt.value;
      sources[name] = describeSource(opt.source);
    }
  }
  return {
    ok: check.ok,
    file: check.file,
    options,
    sources,
    warnings: check.warnings.map((w) => ({ option: w.option, line: w.line ?? null, message: w.message })),
    errors: check.errors.map((e) => ({
      option: e.option ?? null,
      line: e.line ?? null,
      message: e.message,
      ...(e.hint === undefined ? {} : { hint: e.hint }),
    })),
    flags: { mode: check.flags.mode, live: [...check.flags.live], block: [...check.flags.block] },
  };
}
