import { PlanError, UsageError, describeError } from '../errors.js';
import { parseAgentEndpoint } from './agent-client.js';
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

/**
 * A new migration (or plan, or pre-flight) may go to `to` only when it is one of
 * `peers`; with no peers configured, to any agent whose host certificate the
 * deployment CA signed. Migrations already under way are not asked: an agent
 * restarted with a shorter list still settles them with the host they went to.
 */
export function requirePeer(to: string, peers: readonly string[]): void {
  if (peers.length === 0) return;
  const wanted = parseAgentEndpoint(to).url;
  if (peers.some((p) => parseAgentEndpoint(p).url === wanted)) return;
  throw new PlanError(`${to} is not one of this agent's peers ([vmferry] peers = ${peers.join(', ')})`, {
    hint: 'add it to [vmferry] peers (or --peers) and restart the agent, or leave peers unset to allow any agent of the deployment CA',
  });
}
