#!/usr/bin/env node
// Runs the test suite with node:test and the TAP reporter. On Node 20,
// `node --test` does not discover files by itself the way we need, so the
// compiled test files are listed explicitly. Only tests whose .ts source still
// exists run (dist/ may hold stale output of deleted files).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const args = process.argv.slice(2);
const only = args.includes('--unit') ? 'unit' : args.includes('--e2e') ? 'e2e' : 'all';
const filters = args.filter((a) => !a.startsWith('--'));

function walk(dir, out) {
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) walk(p, out);
    else if (entry.name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = walk(dist, [])
  .filter((f) => existsSync(join(root, relative(dist, f)).replace(/\.js$/, '.ts')))
  .filter((f) => {
    const e2e = f.endsWith('.e2e.test.js');
    return only === 'all' || (only === 'e2e') === e2e;
  })
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort(
    (a, b) => Number(a.endsWith('.e2e.test.js')) - Number(b.endsWith('.e2e.test.js')) || a.localeCompare(b),
  );

if (files.length === 0) {
  process.stderr.write('run-tests: no test files found under dist/ (did the build run?)\n');
  process.exit(1);
}

// Tests that drive a real browser need Debian's chromium: installed only when they are about to run.
if (files.some((f) => f.endsWith('dashboard.e2e.test.js'))) {
  spawnSync(process.execPath, [join(root, 'scripts', 'setup.mjs'), '--browser'], {
    cwd: root,
    stdio: 'inherit',
  });
}

const r = spawnSync(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-reporter=tap', '--test-concurrency=2', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(r.status ?? 1);
