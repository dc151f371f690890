import { ConfigError } from '../errors.js';

/** One `key = value` assignment as oslo.config sees it, with where it sits in the file. */
export interface IniEntry {
  /** Section name, lower-cased except `DEFAULT` (oslo.config normalises group names so). */
  readonly section: string;
  readonly key: string;
  /** The value; continuation lines are joined with `\n`, surrounding quotes removed. */
  readonly value: string;
  /** 1-based line of the `key = value` line. */
  readonly line: number;
  /** 1-based line of the last continuation line (equal to `line` for one-line values). */
  readonly lastLine: number;
}

export interface IniSection {
  readonly name: string;
  readonly line: number;
}

/** A parsed file: the entries plus the raw lines, so a rewrite can keep every other byte. */
export interface IniDocument {
  readonly file: string;
  /** Lines without their line terminators. */
  readonly lines: readonly string[];
  /** The terminator after each line ('' for a last line without one). */
  readonly terminators: readonly string[];
  readonly entries: readonly IniEntry[];
  readonly sections: readonly IniSection[];
}

// Python's str.isspace() set, which oslo's strip()/rstrip() use (JS trim() differs:
// it strips U+FEFF but not U+001C..U+001F or U+0085).
const PY_SPACE = new Set([
  '\t',
  '\n',
  '\v',
  '\f',
  '\r',
  ' ',
  '\x1c',
  '\x1d',
  '\x1e',
  '\x1f',
  '\x85',
  '\xa0',
  '\u1680',
  '\u2000',
  '\u2001',
  '\u2002',
  '\u2003',
  '\u2004',
  '\u2005',
  '\u2006',
  '\u2007',
  '\u2008',
  '\u2009',
  '\u200a',
  '\u2028',
  '\u2029',
  '\u202f',
  '\u205f',
  '\u3000',
]);

function pyRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && PY_SPACE.has(s[end - 1] as string)) end--;
  return s.slice(0, end);
}

function pyLstrip(s: string): string {
  let start = 0;
  while (start < s.length && PY_SPACE.has(s[start] as string)) start++;
  return s.slice(start);
}

function pyStrip(s: string): string {
  return pyLstrip(pyRstrip(s));
}

function normaliseSection(name: string): string {
  // oslo_config.cfg.ConfigParser._normalize_group_name
  return name === 'DEFAULT' ? name : name.toLowerCase();
}

/** Splits text the way Python's universal-newline file iteration does (\n, \r\n, \r). */
export function splitLines(text: string): { lines: string[]; terminators: string[] } {
  const lines: string[] = [];
  const terminators: string[] = [];
  const re = /\r\n|\n|\r/g;
  let start = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    lines.push(text.slice(start, m.index));
    terminators.push(m[0]);
    start = m.index + m[0].length;
  }
  if (start < text.length) {
    lines.push(text.slice(start));
    terminators.push('');
  }
  return { lines, terminators };
}

/** Decodes UTF-8 strictly; an invalid byte sequence is a ConfigError naming its line. */
export function decodeConfigBytes(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let line = 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i === bytes.length || bytes[i] === 0x0a) {
        try {
          decoder.decode(bytes.subarray(start, i));
        } catch {
          throw new ConfigError('the file is not valid UTF-8', { file, line });
        }
        line++;
        start = i + 1;
      }
    }
    throw new ConfigError('the file is not valid UTF-8', { file });
  }
}

/** The section a `[name]` line opens (normalised as oslo does). */
function sectionHeader(line: string, file: string, lineNo: number): string {
  if (!line.endsWith(']')) {
    throw new ConfigError(`invalid section header ${JSON.stringify(line)} (must end with ])`, {
      file,
      line: lineNo,
    });
  }
  if (line.length <= 2) throw new ConfigError('empty section name', { file, line: lineNo });
  return normaliseSection(line.slice(1, -1));
}

/** `key = value` or `key: value` (whichever separator comes first); one pair of matching quotes goes. */
function optionLine(line: string, file: string, lineNo: number): { key: string; parts: string[] } {
  const colon = line.indexOf(':');
  const equal = line.indexOf('=');
  if (colon < 0 && equal < 0) {
    throw new ConfigError(
      `no '=' or ':' in ${JSON.stringify(line)}`,
      { file, line: lineNo },
      { hint: 'write options as "name = value"; comment lines start with # or ;' },
    );
  }
  const at = colon < 0 || (equal >= 0 && equal < colon) ? equal : colon;
  const key = pyStrip(line.slice(0, at));
  let value = pyStrip(line.slice(at + 1));
  if (value.length > 0 && value[0] === value[value.length - 1] && (value[0] === '"' || value[0] === "'")) {
    value = value.slice(1, -1);
  }
  if (key === '')
    throw new ConfigError(`empty option name in ${JSON.stringify(line)}`, { file, line: lineNo });
  return { key, parts: [value] };
}

/**
 * Parses an oslo.config INI file with oslo_config.iniparser's rules:
 * `key = value` and `key: value` (whichever separator comes first), `#`/`;` comment
 * lines, indented lines continue the previous value (joined with `\n`), a blank line
 * ends a value, one pair of matching quotes around a value is removed, repeated keys
 * are all kept (the caller decides: last wins for single-valued options). Inline
 * comments do not exist in oslo: `a = b # c` has the value `b # c`.
 *
 * Throws ConfigError with the line number for anything oslo would reject.
 */
export function parseIni(input: string | Uint8Array, file: string): IniDocument {
  let text = typeof input === 'string' ? input : decodeConfigBytes(input, file);
  // Python's utf-8 codec keeps a BOM and oslo would then fail on line 1; accepting it is kinder.
  if (text.startsWith('\ufeff')) text = text.slice(1);
  const { lines, terminators } = splitLines(text);

  const entries: IniEntry[] = [];
  const sections: IniSection[] = [];
  let section: string | null = null;
  let pending: { key: string; parts: string[]; line: number; lastLine: number } | null = null;

  const flush = (): void => {
    if (pending === null) return;
    if (section === null) {
      throw new ConfigError('an option must come after a [section] header', {
        file,
        line: pending.line,
        option: pending.key,
      });
    }
    entries.push({
      section,
      key: pending.key,
      value: pending.parts.join('\n'),
      line: pending.line,
      lastLine: pending.lastLine,
    });
    pending = null;
  };

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = pyRstrip(lines[i] as string);
    if (line === '') {
      flush();
      continue;
    }
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (pending === null) {
        throw new ConfigError(
          `unexpected continuation line ${JSON.stringify(line)}`,
          { file, line: lineNo },
          {
            hint: 'an indented line continues the value above it; remove the indentation or the blank line before it',
          },
        );
      }
      pending.parts.push(pyLstrip(line));
      pending.lastLine = lineNo;
      continue;
    }
    flush();
    if (line.startsWith('[')) {
      const name = sectionHeader(line, file, lineNo);
      section = name;
      sections.push({ name, line: lineNo });
    } else if (!line.startsWith('#') && !line.startsWith(';')) {
      pending = { ...optionLine(line, file, lineNo), line: lineNo, lastLine: lineNo };
    }
  }
  flush();
  return { file, lines, terminators, entries, sections };
}
