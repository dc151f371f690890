import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Agent,
  type AgentClient,
  type AgentOptions,
  type MigrationRecord,
  type VmView,
} from '../../src/agent/index.js';
import { describeError } from '../../src/errors.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../../src/guest/index.js';
import { isTerminalMigrationState, type MigrationReport } from '../../src/migration/index.js';
import type { HostKey, TwoHostLab } from '../../src/lab/index.js';
import { packageRoot } from '../../src/paths.js';
import type { VmSpec, VmSpecDraft } from '../../src/qemu/index.js';

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError !== undefined ? `: ${describeError(lastError)}` : ''}`,
      );
    }
    await sleep(200);
  }
}

/** The guest workload as a VM spec; verify is paced so two guests leave CPU for QEMU's migration threads. */
export function guestSpec(
  name: string,
  memMiB = 128,
  dirtyMiBps = 8,
  verifyMiBps: number | 'max' = 256,
): VmSpecDraft {
  return {
    name,
    memoryMiB: guestRamMiB(memMiB),
    vcpus: 1,
    boot: { kernel: guestKernelPath(), append: guestAppend({ memMiB, dirtyMiBps, verifyMiBps }) },
    disks: [],
    nics: [],
  };
}

/** The guest workload as the complete spec a source agent sends with a migration (machine and CPU chosen). */
export function guestVmSpec(name: string, memMiB = 128): VmSpec {
  return { ...guestSpec(name, memMiB), machine: 'pc-i440fx-7.2', cpu: 'qemu64', nics: [] };
}

/** Waits until a VM's guest has printed `count` OK heartbeats after `afterSeq`; returns the last seq. */
export async function waitForOkHeartbeats(
  client: AgentClient,
  name: string,
  count = 3,
  afterSeq?: number,
): Promise<number> {
  const health = await client.get<{ state: string; reason: string; lastSeq?: number }>(
    `/v1/vms/${name}/health?minOk=${count}&waitMs=30000${afterSeq !== undefined ? `&afterSeq=${afterSeq}` : ''}`,
    { timeoutMs: 40_000 },
  );
  if (health.state !== 'ok') throw new Error(`guest ${name} is ${health.state}: ${health.reason}`);
  return health.lastSeq ?? 0;
}

export async function vmNames(client: AgentClient): Promise<string[]> {
  const { vms } = await client.get<{ vms: VmView[] }>('/v1/vms');
  return vms.map((v) => v.name);
}

/** Waits for a migration to end on its source agent and returns its report. */
export async function migrationReport(
  client: AgentClient,
  id: string,
  timeoutMs = 120_000,
): Promise<MigrationReport> {
  return waitFor(
    `migration ${id} to end`,
    async () => {
      const m = await client.get<MigrationRecord>(`/v1/migrations/${id}`);
      return isTerminalMigrationState(m.state) && m.report !== null
        ? (m.report as MigrationReport)
        : undefined;
    },
    timeoutMs,
  );
}

/** Waits until the migration is moving data (status active and some bytes sent). */
export async function waitUntilTransferring(
  client: AgentClient,
  id: string,
  minBytes = 8 * 1024 * 1024,
): Promise<void> {
  await waitFor(`migration ${id} to be sending data`, async () => {
    const m = await client.get<{ state: string; live?: { sample?: { transferredBytes: number } } }>(
      `/v1/migrations/${id}`,
    );
    if (isTerminalMigrationState(m.state)) throw new Error(`migration ended early: ${m.state}`);
    return (m.live?.sample?.transferredBytes ?? 0) >= minBytes ? true : undefined;
  });
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the vmferry CLI as a user would (bin/vmferry.js), with extra environment. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 180_000,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'vmferry.js'), ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Pids of running QEMU processes whose command line mentions `fragment`. */
export function qemuPidsMatching(fragment: string): Promise<number[]> {
  return new Promise((resolve) => {
    const child = spawn('pgrep', ['-f', `qemu-system.*${fragment}`]);
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('close', () => resolve(out.split('\n').filter(Boolean).map(Number)));
  });
}

/** A tap device as `ip -d link show` prints it in a lab host, or undefined when there is none. */
export function tapLink(lab: TwoHostLab, host: HostKey, tap: string): string | undefined {
  const r = spawnSync('ip', ['-n', lab.agents[host].netns ?? '', '-d', 'link', 'show', tap], {
    encoding: 'utf8',
  });
  return r.status === 0 ? r.stdout : undefined;
}

/** Every living process descended from `pid`, with its command name (from /proc). */
export function descendantsOf(pid: number): { pid: number; comm: string }[] {
  const children = new Map<number, { pid: number; comm: string }[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read around the last ')'.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const ppid = Number(stat.slice(close + 2).split(' ')[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), { pid: Number(entry), comm }]);
  }
  const out: { pid: number; comm: string }[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    for (const c of children.get(todo.pop() ?? -1) ?? []) {
      out.push(c);
      todo.push(c.pid);
    }
  }
  return out;
}

/** Whether a process still runs (a zombie counts as gone). */
export function processAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * One agent on 127.0.0.1 (a port of its own), under TCG with one relay worker, taking VM
 * images from guest/build and disks from `diskDirs` only; the rest as given.
 */
export async function startLoopbackAgent(
  options: Pick<AgentOptions, 'name' | 'stateDir' | 'tls'> & Partial<AgentOptions> & { diskDirs?: string[] },
): Promise<{ agent: Agent; address: string }> {
  const { diskDirs = [], ...rest } = options;
  const agent = await Agent.start({
    listenHost: '127.0.0.1',
    listenPort: 0,
    accel: 'tcg',
    workers: 1,
    vmFileDirs: { imageDirs: [join(packageRoot(), 'guest', 'build')], diskDirs },
    ...rest,
  });
  return { agent, address: agent.addresses.find((a) => a.startsWith('https://')) ?? '' };
}
