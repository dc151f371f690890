#!/usr/bin/env node
// Rewrites the route table in docs/security.md from the code's (src/agent/route-access.ts,
// built into dist/). The unit test in route-access.test.ts fails until the two agree.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { routeTableMarkdown } = await import(join(root, 'dist', 'src', 'agent', 'route-access.js'));
const file = join(root, 'docs', 'security.md');
const doc = readFileSync(file, 'utf8');
const next = doc.replace(
  /(<!-- route-table:start -->\n)[\s\S]*?(\n<!-- route-table:end -->)/,
  (_m, start, end) => `${start}\n${routeTableMarkdown()}\n${end}`,
);
if (next === doc) process.stderr.write("docs/security.md: the route table is already the code's\n");
writeFileSync(file, next);
