import { splitLines } from './ini-parser.js';

type Op = { kind: ' ' | '-' | '+'; text: string; eol: string };

/** Myers' O(ND) shortest edit script over lines (line text and terminator both compared). */
function editScript(a: readonly Op[], b: readonly Op[]): Op[] {
  const n = a.length;
  const m = b.length;
  const same = (x: number, y: number): boolean => a[x]?.text === b[y]?.text && a[x]?.eol === b[y]?.eol;
  const offset = n + m + 1;
  const v = new Int32Array(2 * offset + 1);
  const trace: Int32Array[] = [];
  let found = n === 0 && m === 0;
  for (let d = 0; d <= n + m && !found; d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      let x =
        k === -d || (k !== d && (v[offset + k - 1] as number) < (v[offset + k + 1] as number))
          ? (v[offset + k + 1] as number)
          : (v[offset + k - 1] as number) + 1;
      let y = x - k;
      while (x < n && y < m && same(x, y)) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found = true;
        break;
      }
    }
  }
  const out: Op[] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const vd = trace[d] as Int32Array;
    const k = x - y;
    const prevK =
      k === -d || (k !== d && (vd[offset + k - 1] as number) < (vd[offset + k + 1] as number))
        ? k + 1
        : k - 1;
    const prevX = vd[offset + prevK] as number;
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      out.push({ ...(a[x - 1] as Op), kind: ' ' });
      x--;
      y--;
    }
    if (d > 0) {
      if (x === prevX) out.push({ ...(b[y - 1] as Op), kind: '+' });
      else out.push({ ...(a[x - 1] as Op), kind: '-' });
    }
    x = prevX;
    y = prevY;
  }
  return out.reverse();
}

function toOps(text: string): Op[] {
  const { lines, terminators } = splitLines(text);
  return lines.map((line, i) => ({ kind: ' ', text: line, eol: terminators[i] ?? '' }));
}

function range(start: number, length: number): string {
  // GNU diff: an empty range names the line before it; a one-line range has no length.
  if (length === 0) return `${start - 1},0`;
  return length === 1 ? `${start}` : `${start},${length}`;
}

/**
 * A unified diff of two texts (as `diff -u` prints it), or '' when they are equal.
 * Lines differing only in their terminator (CRLF vs LF) count as changed.
 */
export function unifiedDiff(
  before: string,
  after: string,
  fromLabel: string,
  toLabel: string,
  context = 3,
): string {
  if (before === after) return '';
  const script = editScript(toOps(before), toOps(after));
  const out: string[] = [`--- ${fromLabel}\n`, `+++ ${toLabel}\n`];
  let i = 0;
  let aLine = 1;
  let bLine = 1;
  // Positions of each op in a and b.
  const posA: number[] = [];
  const posB: number[] = [];
  for (const op of script) {
    posA.push(aLine);
    posB.push(bLine);
    if (op.kind !== '+') aLine++;
    if (op.kind !== '-') bLine++;
  }
  while (i < script.length) {
    while (i < script.length && script[i]?.kind === ' ') i++;
    if (i >= script.length) break;
    let start = Math.max(0, i - context);
    let end = i;
    // Extend the hunk while the next change is within 2*context unchanged lines.
    for (;;) {
      while (end < script.length && script[end]?.kind !== ' ') end++;
      let next = end;
      while (next < script.length && script[next]?.kind === ' ') next++;
      if (next < script.length && next - end <= 2 * context) {
        end = next;
        continue;
      }
      end = Math.min(script.length, end + context);
      break;
    }
    if (start < 0) start = 0;
    const hunk = script.slice(start, end);
    const aLen = hunk.filter((o) => o.kind !== '+').length;
    const bLen = hunk.filter((o) => o.kind !== '-').length;
    out.push(`@@ -${range(posA[start] as number, aLen)} +${range(posB[start] as number, bLen)} @@\n`);
    for (const op of hunk) {
      out.push(`${op.kind}${op.text}\n`);
      if (op.eol === '') out.push('\\ No newline at end of file\n');
    }
    i = end;
  }
  return out.join('');
}
