import type { IncomingReply } from './types.js';

/** Where the source QEMU sends its stream: a URI, and what must be closed afterwards. */
export interface TransportSession {
  uri: string;
  close(): Promise<void> | void;
}

export type TransportFactory = (reply: IncomingReply) => Promise<TransportSession>;

/** Closes a transport that is done with, if there is one; a failure to close changes nothing. */
export async function closeTransport(transport: TransportSession | undefined): Promise<void> {
  if (transport !== undefined) await Promise.resolve(transport.close()).catch(() => undefined);
}
