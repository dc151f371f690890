import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import { checkConfig } from './config-check.js';
import { parseIni } from './ini-parser.js';
import { HAND_TUNED_CONF, MITAKA_COMPUTE_CONF, MODERN_CONF } from './sample-confs.fixture.js';
import { prng } from '../prng.js';

const TOKENS = [
  '\n',
  '\r\n',
  '\r',
  ' ',
  '\t',
  '=',
  ':',
  '[',
  ']',
  '#',
  ';',
  '"',
  "'",
  ',',
  '\ufeff',
  '\u00a0',
  '\x85',
  '[libvirt]',
  '[vmferry]',
  '[DEFAULT]',
  'live_migration_flag',
  'live_migration_tunnelled',
  'VIR_MIGRATE_LIVE',
  'true',
  'maybe',
  '-1',
  '99999999999999999999',
  '%s',
  '\x00',
];

function mutate(text: string, rand: () => number): string {
  let s = text;
  const edits = 1 + Math.floor(rand() * 8);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(rand() * (s.length + 1));
    const op = rand();
    if (op < 0.35) {
      const tok = TOKENS[Math.floor(rand() * TOKENS.length)] as string;
      s = s.slice(0, at) + tok + s.slice(at);
    } else if (op < 0.6) {
      s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 20));
    } else if (op < 0.8) {
      const from = Math.floor(rand() * s.length);
      s = s.slice(0, at) + s.slice(from, from + Math.floor(rand() * 40)) + s.slice(at);
    } else {
      s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 0x3000)) + s.slice(at);
    }
  }
  return s;
}

/** The property: a value or a ConfigError with a line, never any other exception. */
function assertParsesOrFailsWithLine(input: string | Uint8Array, label: string): void {
  try {
    const doc = parseIni(input, 'fuzz.conf');
    for (const e of doc.entries) {
      assert.ok(e.line >= 1 && e.lastLine >= e.line && e.lastLine <= doc.lines.length, label);
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      assert.fail(`${label}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
    assert.ok(
      typeof err.line === 'number' && err.line >= 1,
      `${label}: ConfigError without a line: ${err.message}`,
    );
  }
  // The whole check pipeline must hold too: errors are collected, never thrown.
  const c = checkConfig(input, 'fuzz.conf');
  for (const e of c.errors) assert.ok(e instanceof ConfigError, label);
}

describe('parseIni under fuzzing', () => {
  it('survives 2000 random byte strings', () => {
    const rand = prng(0x5eed);
    for (let i = 0; i < 2000; i++) {
      const bytes = new Uint8Array(Math.floor(rand() * 300));
      for (let j = 0; j < bytes.length; j++) {
        // Bias towards printable ASCII and line breaks so some inputs get past line 1.
        const r = rand();
        bytes[j] = r < 0.6 ? 32 + Math.floor(rand() * 95) : r < 0.75 ? 10 : Math.floor(rand() * 256);
      }
      assertParsesOrFailsWithLine(bytes, `random #${i}`);
    }
  });

  it('survives 3000 mutated nova.conf files', () => {
    const rand = prng(20160802);
    const seeds = [MITAKA_COMPUTE_CONF, HAND_TUNED_CONF, MODERN_CONF];
    let parsedOk = 0;
    for (let i = 0; i < 3000; i++) {
      const text = mutate(seeds[i % seeds.length] as string, rand);
      assertParsesOrFailsWithLine(text, `mutant #${i}`);
      assertParsesOrFailsWithLine(new TextEncoder().encode(text), `mutant bytes #${i}`);
      try {
        parseIni(text, 'f');
        parsedOk++;
      } catch {
        // counted below
      }
    }
    // Guard against a fuzzer that only ever produces garbage the parser rejects on line 1.
    assert.ok(parsedOk > 300, `only ${parsedOk} mutants parsed`);
  });
});
