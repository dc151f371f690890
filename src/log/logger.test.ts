import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createAgentLogger, logFunction, type LogLevel } from './logger.js';

function capture(): Writable & { lines: () => string[] } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return Object.assign(stream, { lines: () => text.split('\n').filter((l) => l !== '') });
}

function logger(level: LogLevel, pretty: boolean) {
  const out = capture();
  const log = logFunction(createAgentLogger({ host: 'host-a', level, pretty, destination: out }));
  return { log, out };
}

describe('agent logs', () => {
  it('writes JSON lines with the host on every line, and the VM and migration when given', () => {
    const { log, out } = logger('info', false);
    log('listening on https://198.18.0.1:7700');
    log('migration started', { vm: 'web-1', migration: 'm-1', transport: 'native' });
    log('could not tell host-b', { level: 'warn', migration: 'm-1' });
    const [first, second, third] = out.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(first?.host, 'host-a');
    assert.equal(first?.msg, 'listening on https://198.18.0.1:7700');
    assert.equal(first?.level, 30);
    assert.match(String(first?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal('vm' in (first ?? {}), false);
    assert.deepEqual(
      [second?.host, second?.vm, second?.migration, second?.transport, second?.msg],
      ['host-a', 'web-1', 'm-1', 'native', 'migration started'],
    );
    assert.deepEqual([third?.level, third?.migration], [40, 'm-1']);
  });

  it('drops lines below [vmferry] log_level', () => {
    const { log, out } = logger('warn', false);
    log('routine');
    log('trouble', { level: 'error' });
    assert.deepEqual(
      out.lines().map((l) => (JSON.parse(l) as { msg: string }).msg),
      ['trouble'],
    );
  });

  it('writes readable lines for a terminal, host, VM and migration first', () => {
    const { log, out } = logger('info', true);
    log('migration started', { vm: 'web-1', migration: 'm-1' });
    const [line] = out.lines();
    assert.match(
      line ?? '',
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[host-a\] vm=web-1 migration=m-1 migration started$/,
    );
  });
});
