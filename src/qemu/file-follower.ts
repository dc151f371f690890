import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export interface FileFollower {
  stop(): void;
}

/**
 * Follows a growing file (a VM's serial log) like `tail -f`: calls `onChunk` with
 * each new piece of text. Polls, so it works for files written by another process
 * and for files that do not exist yet.
 */
export function followFile(
  path: string,
  onChunk: (text: string) => void,
  options: { intervalMs?: number; fromOffset?: number } = {},
): FileFollower {
  let offset = options.fromOffset ?? 0;
  let fd: number | undefined;
  let stopped = false;
  const buf = Buffer.alloc(64 * 1024);
  const poll = (): void => {
    if (stopped) return;
    try {
      fd ??= openSync(path, 'r');
      if (fstatSync(fd).size < offset) offset = 0;
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        onChunk(buf.subarray(0, n).toString('latin1'));
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    timer = setTimeout(poll, options.intervalMs ?? 200);
    timer.unref();
  };
  let timer: NodeJS.Timeout = setTimeout(poll, 0);
  timer.unref();
  return {
    stop(): void {
      stopped = true;
      clearTimeout(timer);
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
