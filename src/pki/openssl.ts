import { execFile } from 'node:child_process';
import { CertificateError, HostSetupError } from '../errors.js';

/**
 * Runs the `openssl` command line tool with `args` and resolves with its
 * stdout. Injected into the PKI functions so the process spawning stays at the
 * edge; tests use the real one.
 */
export type OpensslRunner = (args: readonly string[]) => Promise<string>;

const MAX_OUTPUT = 4 * 1024 * 1024;

/** A runner spawning `command` (default `openssl` from PATH; OpenSSL 3.0 or newer). */
export function createOpensslRunner(command = 'openssl'): OpensslRunner {
  return (args) => spawnOpenssl(command, args);
}

/** The default runner: `openssl` from PATH. */
export const runOpenssl: OpensslRunner = createOpensslRunner();

function spawnOpenssl(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, [...args], { maxBuffer: MAX_OUTPUT, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err === null) {
        resolve(stdout);
        return;
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(
          new HostSetupError(`the ${command} command is not installed`, {
            hint: 'install OpenSSL 3 (Debian: apt-get install openssl)',
            cause: err,
          }),
        );
        return;
      }
      const detail = stderr.trim().split('\n').filter(Boolean).slice(-3).join('; ');
      reject(
        new CertificateError(`openssl ${args[0] ?? ''} failed: ${detail || err.message}`, { cause: err }),
      );
    });
  });
}
