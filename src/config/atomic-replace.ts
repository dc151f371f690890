import { constants, copyFile, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces `path` with `content` atomically: the new text goes to a temporary file in
 * the same directory (same mode as the original), is flushed to disk, then renamed
 * over the original, so a reader sees the old file or the new one, never half of one.
 * The original is first copied to `path.bak`, or `path.bak.<UTC timestamp>` when that
 * exists. Returns the backup's path.
 */
export async function replaceFileAtomically(
  path: string,
  content: string,
  now: Date = new Date(),
): Promise<string> {
  const { mode } = await stat(path);
  let backup = `${path}.bak`;
  try {
    await copyFile(path, backup, constants.COPYFILE_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    backup = `${path}.bak.${now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}`;
    await copyFile(path, backup, constants.COPYFILE_EXCL);
  }
  const temp = join(dirname(path), `.${basename(path)}.vmferry-${process.pid}-${now.getTime()}.tmp`);
  const handle = await open(temp, 'wx', mode & 0o7777);
  try {
    await handle.writeFile(content, 'utf8');
    await handle.chmod(mode & 0o7777);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } catch {
    // Some file systems cannot fsync a directory; the rename itself is still atomic.
  } finally {
    await dir.close();
  }
  return backup;
}
