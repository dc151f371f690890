import { execFileSync } from 'node:child_process';
import { HostSetupError, describeError } from './errors.js';

/** Runs iproute2's `ip` with `args`; a failure throws HostSetupError with ip's own words and `hint`. */
export function runIp(args: string[], hint: string): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? describeError(err);
    throw new HostSetupError(`ip ${args.join(' ')} failed: ${stderr}`, { hint, cause: err });
  }
}
