import { UsageError } from '../errors.js';
import { optionRange } from './plan-input.js';
import type { Decided } from './types.js';

/** Relay worker processes an agent may run ([vmferry] workers, where 0 means the default). */
export const RELAY_WORKER_RANGE = { min: 1, max: optionRange('vmferry.workers').max } as const;

/**
 * The relay processes (TLS and tunnel) of an agent on a host with `cpus` CPUs:
 * [vmferry] workers when set (`configured`), else one per 2 CPUs, like the
 * default channel count, leaving the other half to QEMU. On this project's
 * 2-CPU hosts one worker measured faster than two (README, Benchmark).
 */
export function decideRelayWorkers(input: {
  cpus: number;
  configured?: number | undefined;
}): Decided<number> {
  const { configured, cpus } = input;
  if (configured !== undefined && configured !== 0) {
    const { min, max } = RELAY_WORKER_RANGE;
    if (!Number.isInteger(configured) || configured < min || configured > max) {
      throw new UsageError(`relay workers must be a whole number from ${min} to ${max}, got ${configured}`);
    }
    const message = `${configured} relay worker process(es), as [vmferry] workers asks`;
    return { value: configured, reasons: [{ decision: 'relayWorkers', option: 'vmferry.workers', message }] };
  }
  const value = Math.max(1, Math.floor(cpus / 2));
  const message = `${value} relay worker process(es): one per 2 of the host's ${cpus} CPUs, the rest left to QEMU ([vmferry] workers = 0)`;
  return {
    value,
    reasons: [{ decision: 'relayWorkers', option: 'vmferry.workers', capability: 'source.cpus', message }],
  };
}
