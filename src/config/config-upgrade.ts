import { ConfigError } from '../errors.js';
import { checkConfig } from './config-check.js';
import { decodeConfigBytes, type IniDocument, type IniEntry } from './ini-parser.js';
import { MIGRATE_FLAGS, computeMigrationFlags } from './migration-flags.js';
import type { OptionName, OptionValues } from './option-table.js';
import type { ResolvedOption, ResolvedOptions } from './resolve-options.js';
import { unifiedDiff } from './unified-diff.js';

const LEGACY_KEYS = ['live_migration_flag', 'block_migration_flag'] as const;

/** An option the upgrade sets, and why. */
export interface UpgradeSetting {
  readonly option: OptionName;
  readonly value: boolean;
  readonly reason: string;
}

/** A flag whose presence changes with the upgrade, because no option of today's nova says the same. */
export interface FlagWithoutEquivalent {
  readonly kind: 'live' | 'block';
  readonly flag: string;
  /** `lost`: the legacy list had it and today's options cannot; `gained`: today's rules add it. */
  readonly change: 'lost' | 'gained';
  readonly meaning: string;
}

export interface ConfigUpgrade {
  readonly file: string;
  readonly changed: boolean;
  readonly original: string;
  readonly upgraded: string;
  readonly diff: string;
  readonly settings: readonly UpgradeSetting[];
  /** Lines removed (1-based, in the original). */
  readonly removedLines: readonly number[];
  readonly noEquivalent: readonly FlagWithoutEquivalent[];
  readonly legacyFlags: { readonly live: readonly string[]; readonly block: readonly string[] };
  readonly upgradedFlags: { readonly live: readonly string[]; readonly block: readonly string[] };
  readonly messages: readonly string[];
}

// Flags that today's options can express, and the option that does.
const FLAG_OPTIONS = {
  VIR_MIGRATE_TUNNELLED: 'libvirt.live_migration_tunnelled',
  VIR_MIGRATE_AUTO_CONVERGE: 'libvirt.live_migration_permit_auto_converge',
  VIR_MIGRATE_POSTCOPY: 'libvirt.live_migration_permit_post_copy',
  VIR_MIGRATE_TLS: 'libvirt.live_migration_with_native_tls',
} as const satisfies Record<string, OptionName>;

function explain(
  flag: string,
  change: 'lost' | 'gained',
  kind: 'live' | 'block',
  upgraded: ResolvedOptions,
  liveLegacy: ReadonlySet<string>,
): string {
  const meaning = MIGRATE_FLAGS[flag] ?? 'unknown flag';
  const otherList =
    kind === 'block' && flag in FLAG_OPTIONS && liveLegacy.has(flag) === (change === 'gained');
  if (otherList) {
    return (
      `block_migration_flag and live_migration_flag disagreed about ${flag}; today one option ` +
      `(${FLAG_OPTIONS[flag as keyof typeof FLAG_OPTIONS]}) governs both and was taken from live_migration_flag`
    );
  }
  if (
    flag === 'VIR_MIGRATE_AUTO_CONVERGE' &&
    change === 'lost' &&
    upgraded['libvirt.live_migration_permit_post_copy'].value
  ) {
    return "auto-converge is not used when post-copy is permitted (post-copy wins in today's nova)";
  }
  if (flag === 'VIR_MIGRATE_PERSIST_DEST' && change === 'gained') {
    return "today's nova always persists the VM on the destination; nova 13 removed this flag from the lists";
  }
  if (flag === 'VIR_MIGRATE_LIVE' && change === 'gained') {
    return "today's nova always migrates live; without this flag the legacy list paused the guest for the whole migration";
  }
  if (flag === 'VIR_MIGRATE_TLS' && change === 'lost') {
    return 'TLS together with TUNNELLED cannot be expressed: live_migration_with_native_tls excludes tunnelling';
  }
  if (change === 'lost')
    return `no option of today's nova asks for it (${meaning}); after the upgrade it is not used`;
  return `today's rules add it (${meaning})`;
}

function withValues(
  options: ResolvedOptions,
  values: Partial<Record<OptionName, unknown>>,
  file: string,
): ResolvedOptions {
  const out: Record<string, ResolvedOption<unknown>> = { ...options };
  for (const [name, value] of Object.entries(values)) {
    out[name] = { value, source: { kind: 'file', file, line: 0 } };
  }
  for (const key of LEGACY_KEYS) {
    const name = `libvirt.${key}`;
    const spec = out[name];
    if (spec !== undefined) out[name] = { value: spec.value, source: { kind: 'default' } };
  }
  return out as ResolvedOptions;
}

function lastEntry(doc: IniDocument, key: string): IniEntry | undefined {
  return doc.entries.filter((e) => e.section === 'libvirt' && e.key === key).at(-1);
}

function pyBool(v: boolean): string {
  return v ? 'True' : 'False';
}

/**
 * Rewrites the removed `live_migration_flag`/`block_migration_flag` lists into today's
 * options with the same meaning: TUNNELLED becomes live_migration_tunnelled,
 * AUTO_CONVERGE and POSTCOPY the permit_* options, TLS live_migration_with_native_tls
 * (the live list decides; the block list's disagreements are reported). Every other
 * line is kept byte for byte. Flags that change because today's options cannot say
 * the same are listed in `noEquivalent`, each with what it means.
 *
 * Throws ConfigError when the file does not parse or has errors: fix those first.
 */
export function upgradeConfig(content: string | Uint8Array, file: string): ConfigUpgrade {
  const text = typeof content === 'string' ? content : decodeConfigBytes(content, file);
  const check = checkConfig(text, file);
  const first = check.errors[0];
  if (first !== undefined) {
    throw new ConfigError(
      `cannot upgrade a file with errors; first: ${first.message.replace(`${file}:`, 'line ')}`,
      { file, line: first.line, option: first.option },
      { hint: 'run `vmferry config check` and fix the errors first' },
    );
  }
  const doc = check.document as IniDocument;
  const options = check.options as ResolvedOptions;
  const legacyFlags = { live: check.flags.live, block: check.flags.block };
  if (check.flags.mode !== 'legacy') {
    return {
      file,
      changed: false,
      original: text,
      upgraded: text,
      diff: '',
      settings: [],
      removedLines: [],
      noEquivalent: [],
      legacyFlags,
      upgradedFlags: legacyFlags,
      messages: [`${file} has no legacy options (live_migration_flag, block_migration_flag); left alone`],
    };
  }
  const liveLegacy = new Set(legacyFlags.live);
  const settings = upgradeSettings(options, liveLegacy);
  const values: Partial<OptionValues> = {};
  for (const s of settings) (values as Record<string, unknown>)[s.option] = s.value;
  const predicted = withValues(options, values, file);
  const predictedFlags = computeMigrationFlags(predicted);
  const upgradedFlags = { live: predictedFlags.live, block: predictedFlags.block };
  const { upgraded, removedLines, legacyEntries } = rewrite(doc, text, settings);
  // The rewrite must read back as predicted; anything else is a bug here, not in the file.
  const reread = checkConfig(upgraded, file);
  if (
    !reread.ok ||
    reread.flags.mode !== 'current' ||
    reread.flags.live.join() !== upgradedFlags.live.join() ||
    reread.flags.block.join() !== upgradedFlags.block.join()
  ) {
    throw new Error(`vmferry config upgrade produced a file that does not read back as intended (${file})`);
  }
  return {
    file,
    changed: upgraded !== text,
    original: text,
    upgraded,
    diff: unifiedDiff(text, upgraded, `${file}\t(original)`, `${file}\t(upgraded)`),
    settings,
    removedLines,
    noEquivalent: flagsWithoutEquivalent(legacyFlags, upgradedFlags, predicted, liveLegacy),
    legacyFlags,
    upgradedFlags,
    messages: [
      `removed ${legacyEntries.map((e) => `${e.key} (line ${e.line})`).join(', ')}`,
      ...settings.map((s) => `set ${s.option} = ${pyBool(s.value)}: ${s.reason}`),
    ],
  };
}

/** Today's options that say what the corrected legacy live list said. */
function upgradeSettings(options: ResolvedOptions, liveLegacy: ReadonlySet<string>): UpgradeSetting[] {
  const settings: UpgradeSetting[] = [];
  const tunnelled = options['libvirt.live_migration_tunnelled'];
  const wantsTunnel = liveLegacy.has('VIR_MIGRATE_TUNNELLED');
  if (tunnelled.source.kind === 'default') {
    settings.push({
      option: 'libvirt.live_migration_tunnelled',
      value: wantsTunnel,
      reason: wantsTunnel
        ? 'live_migration_flag has VIR_MIGRATE_TUNNELLED'
        : 'live_migration_flag has no VIR_MIGRATE_TUNNELLED (native transport)',
    });
  }
  const permits = [
    ['VIR_MIGRATE_AUTO_CONVERGE', 'libvirt.live_migration_permit_auto_converge'],
    ['VIR_MIGRATE_POSTCOPY', 'libvirt.live_migration_permit_post_copy'],
  ] as const;
  for (const [flag, option] of permits) {
    if (liveLegacy.has(flag) && !options[option].value) {
      settings.push({ option, value: true, reason: `live_migration_flag has ${flag}` });
    }
  }
  if (
    liveLegacy.has('VIR_MIGRATE_TLS') &&
    !wantsTunnel &&
    !options['libvirt.live_migration_with_native_tls'].value
  ) {
    settings.push({
      option: 'libvirt.live_migration_with_native_tls',
      value: true,
      reason: 'live_migration_flag has VIR_MIGRATE_TLS',
    });
  }
  return settings;
}

/** Flags the legacy lists had that today's options cannot express, and flags they add. */
function flagsWithoutEquivalent(
  legacyFlags: { live: readonly string[]; block: readonly string[] },
  upgradedFlags: { live: readonly string[]; block: readonly string[] },
  predicted: ResolvedOptions,
  liveLegacy: ReadonlySet<string>,
): FlagWithoutEquivalent[] {
  const noEquivalent: FlagWithoutEquivalent[] = [];
  for (const kind of ['live', 'block'] as const) {
    const before = new Set(legacyFlags[kind]);
    const after = new Set(upgradedFlags[kind]);
    for (const [flags, other, change] of [
      [before, after, 'lost'],
      [after, before, 'gained'],
    ] as const) {
      for (const flag of [...flags].filter((f) => !other.has(f))) {
        noEquivalent.push({
          kind,
          flag,
          change,
          meaning: explain(flag, change, kind, predicted, liveLegacy),
        });
      }
    }
  }
  return noEquivalent;
}

/**
 * The file rewritten: the first legacy entry becomes the new option lines, other
 * legacy entries go, an option already in the file is changed in place;
 * everything else stays, byte for byte.
 */
function rewrite(
  doc: IniDocument,
  text: string,
  settings: readonly UpgradeSetting[],
): { upgraded: string; removedLines: number[]; legacyEntries: IniEntry[] } {
  const replace = new Map<number, { lastLine: number; lines: string[] }>();
  const legacyEntries = doc.entries
    .filter((e) => e.section === 'libvirt' && (LEGACY_KEYS as readonly string[]).includes(e.key))
    .sort((a, b) => a.line - b.line);
  const insertAt = legacyEntries[0] as IniEntry;
  const toInsert: string[] = [];
  for (const s of settings) {
    const key = s.option.slice('libvirt.'.length);
    const existing = lastEntry(doc, key);
    const line = `${key} = ${pyBool(s.value)}`;
    if (existing === undefined) toInsert.push(line);
    else replace.set(existing.line, { lastLine: existing.lastLine, lines: [line] });
  }
  const removedLines: number[] = [];
  const replacedKeys = legacyEntries.map((x) => x.key).filter((k, i, a) => a.indexOf(k) === i);
  for (const e of legacyEntries) {
    const lines =
      e === insertAt && toInsert.length > 0
        ? [`# vmferry config upgrade: replaces ${replacedKeys.join(' and ')}`, ...toInsert]
        : [];
    replace.set(e.line, { lastLine: e.lastLine, lines });
    for (let l = e.line; l <= e.lastLine; l++) removedLines.push(l);
  }
  const bom = text.startsWith('\ufeff') ? '\ufeff' : '';
  return { upgraded: bom + spliceLines(doc, replace), removedLines, legacyEntries };
}

/** The document's lines with some ranges replaced, each line keeping its own line ending. */
function spliceLines(
  doc: IniDocument,
  replace: ReadonlyMap<number, { lastLine: number; lines: string[] }>,
): string {
  const outLines: string[] = [];
  const outTerms: string[] = [];
  const defaultEol = doc.terminators.find((t) => t !== '') ?? '\n';
  for (let i = 0; i < doc.lines.length; i++) {
    const r = replace.get(i + 1);
    if (r === undefined) {
      outLines.push(doc.lines[i] as string);
      outTerms.push(doc.terminators[i] as string);
      continue;
    }
    const eol = doc.terminators[i] || defaultEol;
    const lastEol = doc.terminators[r.lastLine - 1] as string;
    r.lines.forEach((l, j) => {
      outLines.push(l);
      outTerms.push(j === r.lines.length - 1 ? lastEol : eol);
    });
    if (r.lines.length === 0 && lastEol === '' && outTerms.length > 0) {
      // Removing the last line: the line before it now ends the file, as the original did.
      outTerms[outTerms.length - 1] = '';
    }
    i = r.lastLine - 1;
  }
  return outLines.map((l, i) => l + (outTerms[i] as string)).join('');
}
