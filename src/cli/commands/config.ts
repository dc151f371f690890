import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  OPTION_NAMES,
  checkConfig,
  configCheckJson,
  describeSource,
  isSet,
  replaceFileAtomically,
  upgradeConfig,
  type ConfigCheck,
} from '../../config/index.js';
import { ConfigError } from '../../errors.js';
import { printJson, printLines, type CliIo } from '../io.js';
import type { CommandModule } from '../command.js';

/** The file `config check` and `plan` read when none is named: nova's own. */
export const DEFAULT_NOVA_CONF = '/etc/nova/nova.conf';

/** Reads and checks a file; an unreadable file becomes a failed check, not a crash. */
export async function loadConfigFile(path: string): Promise<ConfigCheck> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const error = new ConfigError(
      `cannot read the file (${e.code ?? e.message})`,
      { file: path },
      {
        hint: path === DEFAULT_NOVA_CONF ? 'name the file: vmferry config check FILE' : undefined,
      },
    );
    return {
      file: path,
      ok: false,
      options: null,
      document: null,
      warnings: [],
      errors: [error],
      flags: { mode: 'current', live: [], block: [] },
    };
  }
  return checkConfig(bytes, path);
}

function at(line: number | undefined): string {
  return line === undefined ? '' : `line ${line}: `;
}

function checkSummary(check: ConfigCheck): string[] {
  const lines: string[] = [];
  const verdict = check.ok ? 'OK' : `${check.errors.length} error${check.errors.length === 1 ? '' : 's'}`;
  lines.push(
    `${check.file}: ${verdict}, ${check.warnings.length} warning${check.warnings.length === 1 ? '' : 's'}`,
  );
  for (const e of check.errors) {
    lines.push(`error: ${e.message}`);
    if (e.hint !== undefined) lines.push(`  hint: ${e.hint}`);
  }
  for (const w of check.warnings) lines.push(`warning: ${at(w.line)}${w.message}`);
  if (check.ok) {
    const rules =
      check.flags.mode === 'legacy' ? 'nova 13 rules on the legacy flag lists' : "today's nova rules";
    lines.push(`flags (${rules}):`);
    lines.push(`  live:  ${check.flags.live.join(' ')}`);
    lines.push(`  block: ${check.flags.block.join(' ')}`);
  }
  if (check.options !== null) {
    const set = OPTION_NAMES.filter((n) => isSet(check.options![n]));
    if (set.length > 0) {
      lines.push('options set in the file:');
      for (const name of set) {
        const o = check.options[name];
        lines.push(`  ${name} = ${JSON.stringify(o.value)} (${describeSource(o.source)})`);
      }
    }
  }
  return lines;
}

async function runCheck(io: CliIo, file: string, opts: { json?: boolean }): Promise<void> {
  const check = await loadConfigFile(file);
  if (opts.json === true) printJson(io, configCheckJson(check));
  else printLines(io, checkSummary(check));
  if (!check.ok) io.exitCode = 1;
}

async function runUpgrade(io: CliIo, file: string, opts: { write?: boolean; json?: boolean }): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new ConfigError(`cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
      file,
    });
  }
  const u = upgradeConfig(bytes, file);
  let backup: string | null = null;
  if (opts.write === true && u.changed) backup = await replaceFileAtomically(file, u.upgraded);
  if (opts.json === true) {
    printJson(io, {
      file,
      changed: u.changed,
      written: backup !== null,
      backup,
      settings: u.settings,
      noEquivalent: u.noEquivalent,
      legacyFlags: u.legacyFlags,
      upgradedFlags: u.upgradedFlags,
      messages: u.messages,
      diff: u.diff,
    });
    return;
  }
  const lines = [...u.messages];
  if (u.noEquivalent.length > 0) {
    lines.push("flags whose meaning changes (no equivalent in today's options):");
    for (const n of u.noEquivalent) {
      lines.push(`  ${n.kind} ${n.change === 'lost' ? '-' : '+'}${n.flag}: ${n.meaning}`);
    }
  }
  printLines(io, lines);
  if (u.diff !== '') io.stdout.write(u.diff);
  if (!u.changed) return;
  printLines(io, [
    backup === null
      ? 'nothing written; run again with --write to apply'
      : `written ${file} (the original is kept as ${backup})`,
  ]);
}

export const configCommand: CommandModule = {
  name: 'config',
  register(program: Command, io: CliIo): void {
    const config = program
      .command('config')
      .description('read and upgrade the nova.conf vmferry takes its settings from');
    config
      .command('check')
      .description(
        `check a nova.conf: values, deprecations, and the VIR_MIGRATE_* flags nova would use (exit 1 on errors)`,
      )
      .argument('[file]', 'the file to check', DEFAULT_NOVA_CONF)
      .option('--json', 'print {ok, options, warnings, errors, flags} as JSON')
      .action((file: string, opts: { json?: boolean }) => runCheck(io, file, opts));
    config
      .command('upgrade')
      .description(
        "rewrite the removed live_migration_flag/block_migration_flag into today's options; prints a diff",
      )
      .argument('<file>', 'the nova.conf to upgrade')
      .option('--write', 'replace the file (atomically, keeping FILE.bak)')
      .option('--json', 'print the result as JSON')
      .action((file: string, opts: { write?: boolean; json?: boolean }) => runUpgrade(io, file, opts));
  },
};
