import { ConfigError } from '../errors.js';
import { nearest } from './edit-distance.js';
import type { IniDocument } from './ini-parser.js';
import { OPTIONS, findOption, qualifiedName, type OptionName, type OptionSpec } from './option-table.js';

/** Something worth telling the operator that does not stop nova (or vmferry) from running. */
export interface ConfigWarning {
  readonly option: string;
  readonly message: string;
  readonly line?: number | undefined;
}

/** A value that passed its type check, and the line it came from. */
export interface TypedValue {
  readonly value: unknown;
  readonly line: number;
}

/** Stage 2 output: typed values of the options set in the file, plus what was wrong. */
export interface TypedConfig {
  readonly file: string;
  readonly values: ReadonlyMap<OptionName, TypedValue>;
  readonly errors: readonly ConfigError[];
  readonly warnings: readonly ConfigWarning[];
}

// oslo_config.types.Boolean
const TRUE_VALUES = ['true', '1', 'on', 'yes'];
const FALSE_VALUES = ['false', '0', 'off', 'no'];

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const IPV6 = /^\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?$/;

function allowedText(spec: OptionSpec): string {
  const unit = spec.unit === undefined ? '' : ` (${spec.unit})`;
  switch (spec.type) {
    case 'bool':
      return 'true or false (also 1/0, on/off, yes/no; any case)';
    case 'tristate':
      return 'true or false (also 1/0, on/off, yes/no; any case), or leave the option out for "unset"';
    case 'int': {
      const range =
        spec.min !== undefined && spec.max !== undefined
          ? ` from ${spec.min} to ${spec.max}`
          : spec.min !== undefined
            ? ` >= ${spec.min}`
            : spec.max !== undefined
              ? ` <= ${spec.max}`
              : '';
      return `a whole number${range}${unit}`;
    }
    case 'choice':
      return `one of ${(spec.choices ?? []).join(', ')}`;
    case 'host':
      return 'an IP address or host name';
    default:
      return 'any text';
  }
}

type Typed = { ok: true; value: unknown } | { ok: false; why: string };

function typeValue(spec: OptionSpec, raw: string): Typed {
  switch (spec.type) {
    case 'bool':
    case 'tristate': {
      const s = raw.toLowerCase();
      if (TRUE_VALUES.includes(s)) return { ok: true, value: true };
      if (FALSE_VALUES.includes(s)) return { ok: true, value: false };
      return { ok: false, why: 'not a boolean' };
    }
    case 'int': {
      const s = raw.trim();
      if (s === '') return { ok: false, why: 'empty (nova would read None and fail)' };
      if (!/^[+-]?\d+$/.test(s)) return { ok: false, why: 'not a whole number' };
      const n = Number(s);
      if (!Number.isSafeInteger(n)) return { ok: false, why: 'too large' };
      if (spec.min !== undefined && n < spec.min) return { ok: false, why: `below the minimum ${spec.min}` };
      if (spec.max !== undefined && n > spec.max) return { ok: false, why: `above the maximum ${spec.max}` };
      return { ok: true, value: n };
    }
    case 'choice':
      if ((spec.choices ?? []).includes(raw)) return { ok: true, value: raw };
      return { ok: false, why: 'not one of the choices' };
    case 'host': {
      if (raw === '') return { ok: true, value: null };
      if (IPV4.test(raw) || HOST_NAME.test(raw) || IPV6.test(raw)) return { ok: true, value: raw };
      return { ok: false, why: 'not an IP address or host name' };
    }
    default:
      return { ok: true, value: raw };
  }
}

const MIGRATION_NAMES = OPTIONS.filter((o) => o.section === 'libvirt' && o.name !== 'virt_type').map(
  (o) => o.name,
);
const VMFERRY_NAMES = OPTIONS.filter((o) => o.section === 'vmferry').map((o) => o.name);

function unknownWarning(
  section: string,
  key: string,
  candidates: readonly string[],
  line: number,
): ConfigWarning {
  const guess = nearest(key, candidates);
  return {
    option: `${section}.${key}`,
    line,
    message:
      `unknown option [${section}] ${key} is ignored` +
      (guess === undefined ? '' : `; did you mean ${guess}?`),
  };
}

/**
 * Stage 2: checks the type of every option vmferry knows and collects warnings about
 * unknown, misplaced, repeated, deprecated and removed options. Never throws: every
 * problem becomes a ConfigError (file, line, option) in `errors`.
 */
export function typeOptions(doc: IniDocument): TypedConfig {
  const values = new Map<OptionName, TypedValue>();
  const errors: ConfigError[] = [];
  const warnings: ConfigWarning[] = [];
  const seen = new Map<OptionName, number[]>();

  for (const entry of doc.entries) {
    const { section, key, value, line } = entry;
    if (
      section === 'DEFAULT' &&
      findOption(`DEFAULT.${key}`) === undefined &&
      /migrat/.test(key) &&
      findOption(`libvirt.${key}`) !== undefined
    ) {
      warnings.push({
        option: `DEFAULT.${key}`,
        line,
        message: `${key} in [DEFAULT] is ignored: nova reads it only from [libvirt]; move it there`,
      });
      continue;
    }
    if (section !== 'libvirt' && section !== 'vmferry' && section !== 'DEFAULT') continue;
    const spec = findOption(`${section}.${key}`);
    // [DEFAULT] holds most of nova's options; vmferry reads a few and ignores the rest quietly.
    if (spec === undefined && section === 'DEFAULT') continue;
    if (spec === undefined) {
      if (section === 'vmferry') warnings.push(unknownWarning(section, key, VMFERRY_NAMES, line));
      else if (/migrat/.test(key)) warnings.push(unknownWarning(section, key, MIGRATION_NAMES, line));
      continue;
    }
    const name = qualifiedName(spec);
    seen.set(name, [...(seen.get(name) ?? []), line]);
    const typed = typeValue(spec, value);
    if (!typed.ok) {
      errors.push(
        new ConfigError(
          `${name} = ${JSON.stringify(value)}: ${typed.why}; allowed: ${allowedText(spec)}`,
          { file: doc.file, line, option: name },
          { hint: spec.help },
        ),
      );
      continue;
    }
    values.set(name, { value: typed.value, line });
    if (spec.removed !== undefined) {
      warnings.push({
        option: name,
        line,
        message: `${name} was removed from nova in ${spec.removed.in}; ${spec.removed.advice}`,
      });
    } else if (spec.deprecated !== undefined && spec.quietDeprecation !== true) {
      warnings.push({
        option: name,
        line,
        message: `${name} is deprecated since nova ${spec.deprecated.since}: ${spec.deprecated.reason}`,
      });
    }
    if (spec.retiredChoices?.includes(typed.value as string) === true) {
      warnings.push({
        option: name,
        line,
        message: `${name} = ${String(typed.value)} is no longer accepted by current nova`,
      });
    }
  }

  for (const [name, lines] of seen) {
    if (lines.length > 1) {
      warnings.push({
        option: name,
        line: lines[lines.length - 1],
        message: `${name} is set ${lines.length} times (lines ${lines.join(', ')}); the last one wins`,
      });
    }
  }
  return { file: doc.file, values, errors, warnings };
}
