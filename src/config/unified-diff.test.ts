import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { unifiedDiff } from './unified-diff.js';

function apply(before: string, diff: string): string {
  // A minimal patcher for the test: enough to prove each hunk says what changed.
  const lines = before.split('\n');
  const out: string[] = [];
  let at = 0;
  const body = diff.split('\n').slice(2);
  for (let i = 0; i < body.length; i++) {
    const m = /^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@$/.exec(body[i] as string);
    if (!m) continue;
    const start = Number(m[1]) - (m[2] === '0' ? 0 : 1);
    while (at < start) out.push(lines[at++] as string);
    for (i++; i < body.length && !(body[i] as string).startsWith('@@'); i++) {
      const l = body[i] as string;
      if (l.startsWith(' ')) {
        out.push(l.slice(1));
        at++;
      } else if (l.startsWith('-')) at++;
      else if (l.startsWith('+')) out.push(l.slice(1));
    }
    i--;
  }
  while (at < lines.length) out.push(lines[at++] as string);
  return out.join('\n');
}

describe('unifiedDiff', () => {
  it('is empty for equal texts', () => {
    assert.equal(unifiedDiff('a\nb\n', 'a\nb\n', 'x', 'y'), '');
  });

  it('prints hunks with three lines of context, as diff -u does', () => {
    const a = 'l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\n';
    const b = 'l1\nl2\nl3\nl4\nX\nl6\nl7\nl8\n';
    assert.equal(
      unifiedDiff(a, b, 'a', 'b'),
      '--- a\n+++ b\n@@ -2,7 +2,7 @@\n l2\n l3\n l4\n-l5\n+X\n l6\n l7\n l8\n',
    );
  });

  it('splits distant changes into separate hunks and merges near ones', () => {
    const a = Array.from({ length: 30 }, (_, i) => `l${i}`).join('\n') + '\n';
    const b = a.replace('l2\n', 'two\n').replace('l25\n', 'twentyfive\n');
    const d = unifiedDiff(a, b, 'a', 'b');
    assert.equal((d.match(/^@@/gm) ?? []).length, 2);
    assert.equal(apply(a, d), b);
    const near = a.replace('l2\n', 'two\n').replace('l8\n', 'eight\n');
    assert.equal((unifiedDiff(a, near, 'a', 'b').match(/^@@/gm) ?? []).length, 1);
  });

  it('handles insertions into and deletions from empty ranges', () => {
    assert.equal(unifiedDiff('', 'a\n', 'x', 'y'), '--- x\n+++ y\n@@ -0,0 +1 @@\n+a\n');
    assert.equal(unifiedDiff('a\n', '', 'x', 'y'), '--- x\n+++ y\n@@ -1 +0,0 @@\n-a\n');
  });

  it('marks a last line without newline', () => {
    assert.equal(
      unifiedDiff('a\nb', 'a\nc', 'x', 'y'),
      '--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n',
    );
  });
});
