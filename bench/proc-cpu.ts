import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { ProcessKind } from './report.js';

/** Clock ticks per second of /proc/<pid>/stat times. */
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** User + system CPU time of a process so far, in clock ticks (throws if it is gone). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Page faults served without I/O so far, all threads (throws if it is gone). */
export function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

/** Which kind of process a command line belongs to (NUL-separated, as in /proc/<pid>/cmdline). */
export function processKind(cmdline: string): ProcessKind {
  const argv = cmdline.split('\0');
  if (/qemu-system/.test(argv[0] ?? '')) return 'qemu';
  // The front door's worker processes and the native relay processes (native/vmferry-relay.c).
  if (argv.some((a) => /relay-worker\.js$/.test(a)) || /(^|\/)vmferry-relay$/.test(argv[0] ?? ''))
    return 'relay';
  if (argv.some((a) => /vmferry|agent/.test(a))) return 'agent';
  return 'other';
}

/** The kind of a running process (throws if it is gone). */
export function kindOf(pid: number): ProcessKind {
  return processKind(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
}

/**
 * The processes in a named network namespace: those whose /proc/<pid>/ns/net is the
 * namespace's inode. Reads /proc directly instead of forking `ip netns pids`, which
 * costs a fork of the caller every call and disturbs what the benchmark measures.
 */
export function netnsPids(name: string): number[] {
  const inode = statSync(`/run/netns/${name}`).ino;
  const want = `net:[${inode}]`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) === want) pids.push(Number(entry));
    } catch {
      // exited, or a kernel thread without a namespace link
    }
  }
  return pids;
}

/**
 * Confines every process of a network namespace, all its threads, to one CPU
 * (`taskset`); processes they start later (QEMU, relay workers) inherit it.
 */
export function pinNamespace(name: string, cpu: string): number[] {
  const pids = netnsPids(name);
  for (const pid of pids) {
    try {
      execFileSync('taskset', ['-a', '-pc', cpu, String(pid)], { stdio: 'ignore' });
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}
