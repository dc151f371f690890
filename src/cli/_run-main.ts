import { PassThrough } from 'node:stream';
import { main } from './main.js';

/** What an in-process CLI run printed, for tests. */
export interface MainResult {
  code: number;
  out: string;
  err: string;
}

/** Runs `vmferry ...args` in this process with captured output and an empty environment (tests only). */
export async function runMain(...args: string[]): Promise<MainResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await main(['node', 'vmferry', ...args], { stdout, stderr, env: {} });
  return { code, out, err };
}
