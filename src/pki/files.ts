import { randomBytes } from 'node:crypto';
import { access, link, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Mode of private keys: owner read/write only. */
export const KEY_MODE = 0o600;
/** Mode of certificates: public, readable by all. */
export const CERT_MODE = 0o644;
/** Mode of directories holding keys. */
export const PRIVATE_DIR_MODE = 0o700;

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `work` with a fresh private scratch directory inside `parent` (same
 * file system as the final files, so they can be linked or renamed into place)
 * and removes it afterwards, whatever happened.
 */
export async function withScratchDir<T>(parent: string, work: (scratch: string) => Promise<T>): Promise<T> {
  await mkdir(parent, { recursive: true, mode: PRIVATE_DIR_MODE });
  const scratch = await mkdtemp(join(parent, '.vmferry-tmp-'));
  try {
    return await work(scratch);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Writes `data` to `path` with `mode`, never leaving a half-written file: the
 * bytes go to a sibling first. With `exclusive`, fails with EEXIST instead of
 * replacing an existing file (link(2) is atomic about that, unlike rename).
 */
export async function publishFile(
  path: string,
  data: string | Buffer,
  mode: number,
  { exclusive }: { exclusive: boolean },
): Promise<void> {
  const tmp = join(dirname(path), `.vmferry-${randomBytes(6).toString('hex')}.tmp`);
  await writeFile(tmp, data, { mode, flag: 'wx' });
  try {
    if (exclusive) await link(tmp, path);
    else await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}
