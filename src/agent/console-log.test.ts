import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UsageError } from '../errors.js';
import { runFiles } from '../qemu/index.js';
import {
  consoleTail,
  lastLines,
  readConsole,
  validateConsoleTail,
  writeConsoleHistory,
} from './console-log.js';

const dirs: string[] = [];
function runDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmf-console-'));
  dirs.push(dir);
  return dir;
}
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('a VM console across hosts', () => {
  it('reads what QEMU wrote, from an offset or the last lines', () => {
    const dir = runDir();
    writeFileSync(runFiles(dir).serialLog, 'boot\nhb 1\nhb 2\n');
    assert.deepEqual(readConsole(dir), { text: 'boot\nhb 1\nhb 2\n', start: 0, end: 15 });
    assert.deepEqual(readConsole(dir, { after: 5 }), { text: 'hb 1\nhb 2\n', start: 5, end: 15 });
    assert.deepEqual(readConsole(dir, { lines: 1 }), { text: 'hb 2\n', start: 10, end: 15 });
    assert.deepEqual(readConsole(dir, { after: 15 }), { text: '', start: 15, end: 15 });
    assert.deepEqual(readConsole(runDir()), { text: '', start: 0, end: 0 }, 'before QEMU wrote anything');
  });

  it("goes on at the destination from the source's tail, with offsets that go on too", () => {
    const source = runDir();
    writeFileSync(runFiles(source).serialLog, 'boot\nhb 1\nhb 2\n');
    const tail = consoleTail(source, 10);
    assert.deepEqual(tail, { text: 'hb 1\nhb 2\n', end: 15 });

    const destination = runDir();
    writeConsoleHistory(destination, validateConsoleTail(JSON.parse(JSON.stringify(tail))));
    appendFileSync(runFiles(destination).serialLog, 'hb 3\n');
    assert.deepEqual(readConsole(destination), { text: 'hb 1\nhb 2\nhb 3\n', start: 5, end: 20 });
    // A reader that last saw offset 10 on the source gets exactly what follows, from the destination.
    assert.deepEqual(readConsole(destination, { after: 10 }), { text: 'hb 2\nhb 3\n', start: 10, end: 20 });
    assert.deepEqual(readConsole(destination, { after: 17 }), { text: ' 3\n', start: 17, end: 20 });
    assert.deepEqual(readConsole(destination, { lines: 2 }), { text: 'hb 2\nhb 3\n', start: 10, end: 20 });
    // What it hands on in turn starts where the first host's bytes still are.
    assert.deepEqual(consoleTail(destination), { text: 'hb 1\nhb 2\nhb 3\n', end: 20 });
  });

  it('keeps bytes as bytes (latin1 in JSON) and refuses a tail that is not', () => {
    const dir = runDir();
    writeFileSync(runFiles(dir).serialLog, Buffer.from([0xc3, 0xa9, 0x0a]));
    const tail = consoleTail(dir);
    assert.equal(tail.text, '\u00c3\u00a9\n');
    assert.throws(() => validateConsoleTail({ text: '\u20ac', end: 1 }), UsageError);
    assert.throws(() => validateConsoleTail({ text: 'abc', end: 2 }), /consoleTail must be/);
    assert.throws(
      () => validateConsoleTail({ text: 'x'.repeat(64 * 1024 + 1), end: 70_000 }),
      /at most 65536/,
    );
  });

  it('counts a last line without its newline', () => {
    assert.deepEqual(lastLines('a\nb\nc', 2), { text: 'b\nc', cut: 2 });
    assert.deepEqual(lastLines('a\nb\n', 5), { text: 'a\nb\n', cut: 0 });
  });
});
