import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Fault injection for the end-to-end tests: `VMFERRY_FAILPOINTS="name=ms,name=hold,..."`
 * in an agent's environment delays the named points by that many milliseconds, or
 * holds them until the test lets them go, so a test reaches a phase of a migration
 * deterministically instead of sleeping and hoping. A held point writes
 * `NAME.reached` into `VMFERRY_FAILPOINT_DIR` and waits until `NAME.release`
 * appears there (then removes both, so it can be held again). Unset in production;
 * the agent logs any that are set at start-up.
 *
 * Points:
 * - `outgoing.prepare`: the source, before it asks the destination to prepare;
 * - `incoming.prepared`: the destination, its incoming QEMU listening, before it answers the prepare;
 * - `outgoing.precopy-early`: the source, at its first look at QEMU sending (first pass over memory);
 * - `outgoing.precopy-late`: the source, at its first look after the first pass (dirty pages being sent again);
 * - `outgoing.switchover`: the source, block migration: QEMU paused the guest before the switch-over, before the disk copies are completed;
 * - `outgoing.handover`: the source, QEMU done and the hand-over journaled, before it asks the destination to start the guest;
 * - `incoming.complete`: the destination, before it checks QEMU and starts the guest;
 * - `incoming.started`: the destination, the guest started (`cont`), before the migration is journaled completed;
 * - `outgoing.postcopy`: the source, at its first look at QEMU in post-copy (the guest runs on the destination).
 */
export const FAILPOINTS = [
  'outgoing.prepare',
  'incoming.prepared',
  'outgoing.precopy-early',
  'outgoing.precopy-late',
  'outgoing.switchover',
  'outgoing.handover',
  'incoming.complete',
  'incoming.started',
  'outgoing.postcopy',
] as const;
export type Failpoint = (typeof FAILPOINTS)[number];

/** What a point does: wait that many milliseconds, or until the test releases it. */
export type FailpointAction = number | 'hold';

/** Parses the variable's value; an unknown name or a bad action throws, naming it. */
export function parseFailpoints(text: string | undefined): Map<Failpoint, FailpointAction> {
  const out = new Map<Failpoint, FailpointAction>();
  for (const item of (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name = '', value = ''] = item.split('=');
    if (!(FAILPOINTS as readonly string[]).includes(name))
      throw new Error(
        `VMFERRY_FAILPOINTS: unknown point ${JSON.stringify(name)}; known: ${FAILPOINTS.join(', ')}`,
      );
    if (value === 'hold') {
      out.set(name as Failpoint, 'hold');
      continue;
    }
    const ms = Number(value);
    if (value === '' || !Number.isInteger(ms) || ms < 0)
      throw new Error(
        `VMFERRY_FAILPOINTS: ${name} needs a delay in ms or hold (name=ms, name=hold), got ${JSON.stringify(value)}`,
      );
    out.set(name as Failpoint, ms);
  }
  return out;
}

let active: Map<Failpoint, FailpointAction> | undefined;

/** The points set in this process's environment. */
export function activeFailpoints(): Map<Failpoint, FailpointAction> {
  if (active === undefined) {
    active = parseFailpoints(process.env.VMFERRY_FAILPOINTS);
    if ([...active.values()].includes('hold') && !process.env.VMFERRY_FAILPOINT_DIR)
      throw new Error(
        'VMFERRY_FAILPOINTS: a held point needs VMFERRY_FAILPOINT_DIR (where NAME.release appears)',
      );
  }
  return active;
}

/** Waits as long as the point is set to (nothing when it is not). */
export async function failpoint(name: Failpoint): Promise<void> {
  const action = activeFailpoints().get(name);
  if (action === undefined || action === 0) return;
  if (action !== 'hold') {
    await sleep(action);
    return;
  }
  const dir = process.env.VMFERRY_FAILPOINT_DIR ?? '';
  const reached = join(dir, `${name}.reached`);
  const release = join(dir, `${name}.release`);
  writeFileSync(reached, `${process.pid}\n`);
  while (!existsSync(release)) await sleep(50);
  rmSync(release, { force: true });
  rmSync(reached, { force: true });
}
