import { UsageError, describeError } from '../errors.js';
import type { AgentApi, PeerStatus } from './api-client.js';

export type { PeerStatus };

/** `[vmferry] peers` / `--peers`: comma-separated https://HOST:PORT addresses, checked. */
export function parsePeers(text: string | null | undefined): string[] {
  if (text === null || text === undefined || text.trim() === '') return [];
  const peers = text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  for (const p of peers) {
    let url: URL;
    try {
      url = new URL(p);
    } catch {
      throw new UsageError(`peer ${JSON.stringify(p)} is not an address`, {
        hint: 'write https://HOST:PORT',
      });
    }
    if (url.protocol !== 'https:' || url.port === '' || url.pathname !== '/' || url.search !== '') {
      throw new UsageError(`peer ${JSON.stringify(p)} must be https://HOST:PORT`, {
        hint: 'for example https://198.18.0.2:7700',
      });
    }
  }
  return [...new Set(peers.map((p) => p.replace(/\/$/, '')))];
}

/** Asks every peer for its host summary at once; each answers or says why not within `timeoutMs`. */
export async function peerStatuses(
  addresses: readonly string[],
  api: (address: string) => AgentApi,
  timeoutMs = 5000,
): Promise<PeerStatus[]> {
  return Promise.all(
    addresses.map(async (address): Promise<PeerStatus> => {
      try {
        return { address, host: await api(address).host({ timeoutMs }) };
      } catch (err) {
        return { address, unreachable: describeError(err) };
      }
    }),
  );
}
