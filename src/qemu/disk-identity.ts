import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

const MIB = 1024 * 1024;

/** A disk image as one host sees it: size and a fingerprint of its first and last MiB. */
export interface DiskIdentity {
  path: string;
  sizeBytes: number;
  /** sha256 of the first and the last MiB (the whole file when smaller). */
  fingerprint: string;
}

/**
 * A disk image's identity as one host sees it: its size and a sha256 of its first
 * and last MiB (the whole file when it is smaller than 2 MiB). Two hosts that see
 * the same shared file get the same identity, unless the guest wrote to those
 * regions in between (callers compare more than once before calling them different).
 */
export function diskIdentity(path: string): DiskIdentity {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const hash = createHash('sha256');
    const buf = Buffer.alloc(MIB);
    const region = (offset: number, length: number): void => {
      let done = 0;
      while (done < length) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, length - done), offset + done);
        if (n <= 0) break;
        hash.update(buf.subarray(0, n));
        done += n;
      }
    };
    if (size <= 2 * MIB) region(0, size);
    else {
      region(0, MIB);
      region(size - MIB, MIB);
    }
    return { path, sizeBytes: size, fingerprint: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}
