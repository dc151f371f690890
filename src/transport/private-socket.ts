import { chownSync, lstatSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:net';
import { UsageError } from '../errors.js';

/** A user and group a socket file is handed to (QEMU's, when the agent runs it as another user). */
export interface SocketOwner {
  uid: number;
  gid: number;
}

/**
 * Listens on a unix socket that is owner-only (0600) from the moment it exists.
 * bind(2) creates the file under the process umask, and `net.Server.listen`
 * binds before it returns, so the umask is narrowed around that call instead of
 * chmod-ing a socket others could already have connected to. With `owner`, the
 * file is then given to that user: callers keep such sockets in a directory only
 * the agent and that user can enter, so no one else can reach it meanwhile.
 */
export async function listenPrivate(server: Server, path: string, owner?: SocketOwner): Promise<void> {
  removeStaleSocket(path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const previous = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  if (owner !== undefined) chownSync(path, owner.uid, owner.gid);
}

/** Removes a socket file left by an earlier listener; refuses to remove anything that is not a socket. */
export function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) throw new UsageError(`socket path ${path} exists and is not a socket`);
  unlinkSync(path);
}
