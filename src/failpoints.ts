/**
 * Fault injection for the end-to-end tests: `VMFERRY_FAILPOINTS="name=ms,..."` in an
 * agent's environment delays the named points by that many milliseconds, so a test
 * can make, say, the destination's hand-over outlast the source's patience without
 * racing timers. Unset in production; the agent logs any that are set at start-up.
 *
 * Points: `incoming.complete` (the destination, before it checks QEMU and starts the guest).
 */
export const FAILPOINTS = ['incoming.complete'] as const;
export type Failpoint = (typeof FAILPOINTS)[number];

/** Parses the variable's value; an unknown name or a bad delay throws, naming it. */
export function parseFailpoints(text: string | undefined): Map<Failpoint, number> {
  const out = new Map<Failpoint, number>();
  for (const item of (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name = '', value = ''] = item.split('=');
    if (!(FAILPOINTS as readonly string[]).includes(name))
      throw new Error(
        `VMFERRY_FAILPOINTS: unknown point ${JSON.stringify(name)}; known: ${FAILPOINTS.join(', ')}`,
      );
    const ms = Number(value);
    if (!Number.isInteger(ms) || ms < 0)
      throw new Error(
        `VMFERRY_FAILPOINTS: ${name} needs a delay in ms (name=ms), got ${JSON.stringify(value)}`,
      );
    out.set(name as Failpoint, ms);
  }
  return out;
}

let active: Map<Failpoint, number> | undefined;

/** The points set in this process's environment. */
export function activeFailpoints(): Map<Failpoint, number> {
  active ??= parseFailpoints(process.env.VMFERRY_FAILPOINTS);
  return active;
}

/** Waits as long as the point is set to (nothing when it is not). */
export async function failpoint(name: Failpoint): Promise<void> {
  const ms = activeFailpoints().get(name);
  if (ms !== undefined && ms > 0) await new Promise((r) => setTimeout(r, ms));
}
