import { OPTIONS, qualifiedName, type OptionName, type OptionValues } from './option-table.js';
import type { TypedConfig } from './type-options.js';

/** Where an effective value came from: a line of the file, or the option's default. */
export type OptionSource =
  { readonly kind: 'default' } | { readonly kind: 'file'; readonly file: string; readonly line: number };

export interface ResolvedOption<T> {
  readonly value: T;
  readonly source: OptionSource;
}

/** Stage 3 output: the effective value of every option and where it came from. */
export type ResolvedOptions = { readonly [K in OptionName]: ResolvedOption<OptionValues[K]> };

/** Stage 3: fills in defaults for every option the file does not set. */
export function resolveOptions(typed: TypedConfig): ResolvedOptions {
  const out: Record<string, ResolvedOption<unknown>> = {};
  for (const spec of OPTIONS) {
    const name = qualifiedName(spec);
    const set = typed.values.get(name);
    out[name] =
      set === undefined
        ? { value: spec.default, source: { kind: 'default' } }
        : { value: set.value, source: { kind: 'file', file: typed.file, line: set.line } };
  }
  return out as ResolvedOptions;
}

/**
 * Resolved options from plain values, for callers that have no file (tests, API
 * requests): every value given is sourced to `file` at line 0, the rest are defaults.
 */
export function optionsFrom(values: Partial<OptionValues>, file = '<memory>'): ResolvedOptions {
  const out: Record<string, ResolvedOption<unknown>> = {};
  for (const spec of OPTIONS) {
    const name = qualifiedName(spec);
    out[name] =
      name in values
        ? { value: (values as Record<string, unknown>)[name], source: { kind: 'file', file, line: 0 } }
        : { value: spec.default, source: { kind: 'default' } };
  }
  return out as ResolvedOptions;
}

/** True when the file set the option (rather than nova's or vmferry's default applying). */
export function isSet(option: ResolvedOption<unknown>): boolean {
  return option.source.kind === 'file';
}

/** `file:line` or `default`, for explanations. */
export function describeSource(source: OptionSource): string {
  return source.kind === 'default' ? 'default' : `${source.file}:${source.line}`;
}
