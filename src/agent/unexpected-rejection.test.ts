import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MigrationState } from '../migration/index.js';
import { markMigrationError } from './journal-write-errors.js';
import { unexpectedRejection } from './unexpected-rejection.js';

function policy(states: Record<string, MigrationState>) {
  const lines: { line: string; fields: unknown }[] = [];
  const takenUp: [string, string][] = [];
  const pending: (() => void)[] = [];
  let counted = 0;
  const deps = {
    log: (line: string, fields?: unknown) => lines.push({ line, fields }),
    count: () => counted++,
    migrationState: (id: string) => states[id],
    takeUp: (id: string, reason: string) => takenUp.push([id, reason]),
    later: (fn: () => void) => pending.push(fn),
  };
  return {
    reject: (reason: unknown) => unexpectedRejection(reason, deps),
    runLater: () => pending.splice(0).forEach((fn) => fn()),
    lines,
    takenUp,
    counted: () => counted,
  };
}

describe("the agent's policy for rejections nothing handled", () => {
  it('logs the stack at error level, counts it, and takes up the migration it concerns, later', () => {
    const p = policy({ m1: 'migrating' });
    const err = markMigrationError(new Error('driver blew up'), 'm1');
    p.reject(err);
    assert.equal(p.counted(), 1);
    assert.match(
      p.lines[0]?.line ?? '',
      /^unexpected rejection \(a bug; the agent keeps serving\): Error: driver blew up\n\s+at /,
    );
    assert.deepEqual(p.lines[0]?.fields, { level: 'error', migration: 'm1' });
    assert.deepEqual(p.takenUp, [], 'not on the same tick: the failed task may still be unwinding');
    p.runLater();
    assert.deepEqual(p.takenUp, [['m1', 'its task ended unexpectedly: driver blew up']]);
  });

  it('leaves a migration that ended meanwhile, or has no record, alone', () => {
    const p = policy({ done: 'completed', gone: 'failed' });
    for (const id of ['done', 'gone', 'unknown']) p.reject(markMigrationError(new Error('late'), id));
    p.runLater();
    assert.deepEqual(p.takenUp, []);
    assert.equal(p.counted(), 3);
  });

  it('only logs and counts a rejection that concerns no migration, whatever was thrown', () => {
    const p = policy({});
    p.reject(new TypeError('x is undefined'));
    p.reject('a string');
    p.reject(undefined);
    p.runLater();
    assert.deepEqual(p.takenUp, []);
    assert.equal(p.counted(), 3);
    assert.match(p.lines[0]?.line ?? '', /TypeError: x is undefined/);
    assert.match(p.lines[1]?.line ?? '', /: a string$/);
    assert.deepEqual(p.lines[2]?.fields, { level: 'error' });
  });
});
