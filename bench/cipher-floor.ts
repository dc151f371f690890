/**
 * The relay's floor: what encrypting 1 GiB costs one core with a TLS 1.3
 * suite's AEAD, in a Node process like a relay worker, 16 KiB (one TLS
 * record) at a time through one cipher context, as TLS keeps one per
 * direction. `cipherCpuPerGiB` of the benchmark.
 *
 *   node dist/bench/cipher-floor.js [--mib 1024] [--suite TLS_AES_256_GCM_SHA384] [--cpu 0]
 */
import { spawn } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** Node's name of each TLS 1.3 suite's AEAD, and its key length. */
export const SUITE_CIPHERS: Record<string, { cipher: string; keyBytes: number }> = {
  TLS_AES_128_GCM_SHA256: { cipher: 'aes-128-gcm', keyBytes: 16 },
  TLS_AES_256_GCM_SHA384: { cipher: 'aes-256-gcm', keyBytes: 32 },
  TLS_CHACHA20_POLY1305_SHA256: { cipher: 'chacha20-poly1305', keyBytes: 32 },
};

const RECORD = 16 * 1024;

/** Encrypts `mib` MiB in TLS-sized records here; CPU seconds per GiB of this process. */
export function encryptHere(suite: string, mib: number): number {
  const spec = SUITE_CIPHERS[suite];
  if (spec === undefined) throw new Error(`unknown TLS 1.3 suite ${suite}`);
  const cipher = createCipheriv(spec.cipher as 'aes-256-gcm', randomBytes(spec.keyBytes), randomBytes(12), {
    authTagLength: 16,
  });
  const record = randomBytes(RECORD);
  const records = (mib * 1024 * 1024) / RECORD;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < records; i++) cipher.update(record);
  cipher.final();
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / 1e6 / (mib / 1024);
}

/** The same in a fresh Node process, pinned to `cpu` when given (the benchmark's pinned host core). */
export function cipherCpuPerGiB(suite: string, o: { mib?: number; cpu?: string } = {}): Promise<number> {
  const args = [
    process.execPath,
    fileURLToPath(import.meta.url),
    '--suite',
    suite,
    '--mib',
    String(o.mib ?? 1024),
  ];
  const [command = '', ...rest] = o.cpu === undefined ? args : ['taskset', '-c', o.cpu, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(command, rest, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const value = Number(out.trim());
      if (code === 0 && Number.isFinite(value)) resolve(value);
      else reject(new Error(`cipher floor measurement exited with ${code}: ${out}`));
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      suite: { type: 'string', default: 'TLS_AES_256_GCM_SHA384' },
      mib: { type: 'string', default: '1024' },
    },
  });
  process.stdout.write(`${encryptHere(values.suite, Number(values.mib)).toFixed(4)}\n`);
}
