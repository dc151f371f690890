/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4), for
 * tests that check what /metrics serves: every line is a HELP, a TYPE or a
 * sample of a declared family, or parsing fails naming the line.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: string;
  help: string;
  samples: PromSample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const TYPES = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];
const SUFFIXES: Record<string, readonly string[]> = {
  counter: ['_total', ''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
  gauge: [''],
  untyped: [''],
};

function parseValue(text: string, where: string): number {
  // Prometheus reads values with Go's ParseFloat: NaN and Inf in any case.
  const special = text.toLowerCase();
  if (special === '+inf' || special === 'inf') return Infinity;
  if (special === '-inf') return -Infinity;
  if (special === 'nan') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text))
    throw new Error(`${where}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

function parseLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = new RegExp(`\\s*(${NAME})="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"\\s*(,|$)`, 'y');
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (m === null) throw new Error(`${where}: bad labels {${text}}`);
    const [, key = '', raw = ''] = m;
    if (key in labels) throw new Error(`${where}: label ${key} twice`);
    labels[key] = raw.replace(/\\(["\\n])/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    at = re.lastIndex;
  }
  return labels;
}

/** The families of an exposition, by name; throws on the first line that breaks the format. */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const family = (name: string): PromFamily => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: 'untyped', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const sampleRe = new RegExp(`^(${NAME})(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+(-?\\d+))?$`);
  text.split('\n').forEach((line, i) => {
    const where = `line ${i + 1}`;
    if (line === '') return;
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) ?(.*)$`).exec(line);
    if (meta !== null) {
      const [, kind, name = '', rest = ''] = meta;
      const f = family(name);
      if (kind === 'HELP') f.help = rest;
      else {
        if (!TYPES.includes(rest)) throw new Error(`${where}: unknown type ${JSON.stringify(rest)}`);
        if (f.samples.length > 0) throw new Error(`${where}: TYPE of ${name} after its samples`);
        f.type = rest;
      }
      return;
    }
    if (line.startsWith('#')) return;
    const m = sampleRe.exec(line);
    if (m === null) throw new Error(`${where}: not a sample: ${JSON.stringify(line)}`);
    const [, name = '', labelText, valueText = ''] = m;
    const owner = [...families.values()].find((f) =>
      (SUFFIXES[f.type] ?? ['']).some((suffix) => `${f.name}${suffix}` === name),
    );
    if (owner === undefined) throw new Error(`${where}: sample ${name} belongs to no declared family`);
    owner.samples.push({
      name,
      labels: labelText === undefined ? {} : parseLabels(labelText, where),
      value: parseValue(valueText, where),
    });
  });
  return families;
}

/** The value of the one sample named `name` whose labels include `labels`; undefined if none. */
export function sampleValue(
  families: Map<string, PromFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const matches = [...families.values()]
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length > 1)
    throw new Error(`${matches.length} samples ${name} match ${JSON.stringify(labels)}`);
  return matches[0]?.value;
}
