import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentApi, AgentClient, lookUpQemuUser } from '../agent/index.js';
import { HostSetupError, UsageError } from '../errors.js';
import type { HostSummary } from '../agent/index.js';
import type { Accelerator } from '../qemu/index.js';
import { packageRoot } from '../paths.js';
import { initCa, issueCertificate, loadTlsIdentity, type TlsIdentity } from '../pki/index.js';
import {
  canUseNetns,
  createThreeHostNetwork,
  createTwoHostNetwork,
  inNetns,
  type TwoHostNetwork,
} from './netns.js';

/** The two hosts every lab has. */
export type HostKey = 'a' | 'b';
/** Any host of a lab, the third included. */
export type LabHostKey = HostKey | 'c';

export interface LabAgent {
  key: LabHostKey;
  name: string;
  /** Address peers use: https://IP:PORT. */
  address: string;
  /** Local address for the operator: unix:<state>/agent.sock. */
  localAddress: string;
  stateDir: string;
  logFile: string;
  netns: string | undefined;
  process: ChildProcess | undefined;
}

export interface TwoHostLabOptions {
  /** How many hosts: 2 (a, b: a direct veth link, default) or 3 (a, b, c on a switch). */
  hosts?: 2 | 3;
  /** Namespaces when root (default), loopback ports otherwise or when false. */
  useNetns?: boolean;
  /** Namespace prefix, unique per concurrent lab. */
  prefix?: string;
  /** Subnet (third octet of 198.18.x.0/24), unique per concurrent lab. */
  subnet?: number;
  linkGbps?: number;
  /** Extra arguments for both agents. */
  agentArgs?: string[];
  /** Extra environment per agent (e.g. VMFERRY_FAILPOINTS for a test). */
  agentEnv?: Partial<Record<LabHostKey, NodeJS.ProcessEnv>>;
  /** A nova.conf both agents read (--config): [libvirt] live_migration_* and [vmferry] options. */
  novaConf?: string | Partial<Record<LabHostKey, string>>;
  /**
   * Bind mounts only one host's agent (and the QEMUs it starts) sees, so a path can show
   * different files on the two hosts, as shared storage can fail to (network namespaces only).
   */
  mounts?: Partial<Record<LabHostKey, { source: string; target: string }[]>>;
  /** More directories VM disks and images may come from (a test's own temporary directory). */
  vmDirs?: string[];
  /** Keep the working directory after close (for debugging). */
  keep?: boolean;
  /**
   * The agents' accelerator: `auto` (default) lets each agent probe and choose (KVM
   * where it works and is not slower than TCG); `tcg` or `kvm` pins it, as tests and
   * benchmarks that compare figures do; `{a, b}` pins each agent (to test a mismatch).
   */
  accel?: Accelerator | 'auto' | Partial<Record<LabHostKey, Accelerator>>;
}

/**
 * Two vmferry hosts on this machine, for the demo, the end-to-end tests and
 * the benchmark: a private CA, a certificate per agent and one for the
 * operator, and two agent processes — in their own network namespaces joined
 * by a veth link when running as root, on two loopback ports otherwise.
 */
export class TwoHostLab {
  readonly dir: string;
  /** The agents: always a and b, c in a three-host lab. */
  readonly agents: Record<'a' | 'b', LabAgent> & Partial<Record<'c', LabAgent>>;
  readonly network: TwoHostNetwork | undefined;
  readonly operator: TlsIdentity;
  readonly operatorDir: string;
  private readonly options: TwoHostLabOptions;
  private readonly clients: AgentClient[] = [];
  private closed = false;

  private constructor(
    dir: string,
    network: TwoHostNetwork | undefined,
    agents: Record<'a' | 'b', LabAgent> & Partial<Record<'c', LabAgent>>,
    operatorDir: string,
    operator: TlsIdentity,
    options: TwoHostLabOptions,
  ) {
    this.dir = dir;
    this.network = network;
    this.agents = agents;
    this.operatorDir = operatorDir;
    this.operator = operator;
    this.options = options;
  }

  static async create(options: TwoHostLabOptions = {}): Promise<TwoHostLab> {
    const dir = mkdtempSync(join(tmpdir(), 'vmf-lab-'));
    // QEMU runs as its own user (the agents run as root here) and must pass through to the agents' state.
    chmodSync(dir, 0o711);
    const keys: LabHostKey[] = options.hosts === 3 ? ['a', 'b', 'c'] : ['a', 'b'];
    const useNetns = options.useNetns ?? canUseNetns();
    let network: TwoHostNetwork | undefined;
    try {
      if (useNetns) {
        network =
          keys.length === 3
            ? createThreeHostNetwork({ prefix: options.prefix ?? 'vmf', subnet: options.subnet ?? 0 })
            : createTwoHostNetwork({
                prefix: options.prefix ?? 'vmf',
                subnet: options.subnet ?? 0,
                linkGbps: options.linkGbps,
              });
      }
      const caDir = join(dir, 'ca');
      await initCa(caDir);
      const basePort = 17_000 + Math.floor(Math.random() * 20_000);
      const agents = {} as Record<'a' | 'b', LabAgent> & Partial<Record<'c', LabAgent>>;
      for (const [i, key] of keys.entries()) {
        const ip = network?.[key]?.address ?? '127.0.0.1';
        const port = network !== undefined ? 7700 : basePort + i;
        const name = `host-${key}`;
        await issueCertificate(caDir, { name, role: 'host', ips: [ip] });
        const stateDir = join(dir, key);
        mkdirSync(stateDir, { recursive: true });
        agents[key] = {
          key,
          name,
          address: `https://${ip}:${port}`,
          localAddress: `unix:${join(stateDir, 'agent.sock')}`,
          stateDir,
          logFile: join(dir, `agent-${key}.log`),
          netns: network?.[key]?.netns,
          process: undefined,
        };
      }
      await issueCertificate(caDir, { name: 'operator', role: 'operator' });
      for (const key of keys) {
        const conf = typeof options.novaConf === 'string' ? options.novaConf : options.novaConf?.[key];
        if (conf !== undefined) writeFileSync(join(dir, `nova-${key}.conf`), conf);
      }
      const operatorDir = join(caDir, 'issued', 'operator');
      const lab = new TwoHostLab(
        dir,
        network,
        agents,
        operatorDir,
        await loadTlsIdentity(operatorDir),
        options,
      );
      return lab;
    } catch (err) {
      network?.destroy();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The nova.conf agent `key` reads (--config), when it has one. */
  novaConfPath(key: LabHostKey): string {
    return join(this.dir, `nova-${key}.conf`);
  }

  /** Gives agent `key` another nova.conf; it reads it at its next start. */
  setNovaConf(key: LabHostKey, text: string): void {
    writeFileSync(this.novaConfPath(key), text);
  }

  /**
   * Starts (or restarts) one agent and waits until it serves; `env` adds to the
   * lab's agentEnv for this start only (a test's failpoints for one scenario).
   */
  async startAgent(key: LabHostKey, env: NodeJS.ProcessEnv = {}): Promise<void> {
    const agent = this.agent(key);
    const url = new URL(agent.address);
    const argv = [
      process.execPath,
      join(packageRoot(), 'bin', 'vmferry.js'),
      'agent',
      '--name',
      agent.name,
      '--listen',
      `${url.hostname}:${url.port}`,
      '--state-dir',
      agent.stateDir,
      '--tls-dir',
      join(this.dir, 'ca', 'issued', agent.name),
      '--accel',
      this.accelOf(key),
      // VM files: the project's guest builds (the Linux guest's cache among them) and this lab's directory.
      '--image-dir',
      join(packageRoot(), 'guest', 'build'),
      '--image-dir',
      this.dir,
      '--disk-dir',
      this.dir,
      ...(this.options.vmDirs ?? []).flatMap((d) => ['--disk-dir', d]),
      '--test-mode',
      ...(existsSync(this.novaConfPath(key)) ? ['--config', this.novaConfPath(key)] : []),
      ...(this.options.agentArgs ?? []),
    ];
    const full =
      agent.netns !== undefined ? inNetns(agent.netns, withMounts(this.options.mounts?.[key], argv)) : argv;
    const log = createWriteStream(agent.logFile, { flags: 'a' });
    const child = spawn(full[0] ?? 'node', full.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.options.agentEnv?.[key], ...env },
    });
    agent.process = child;
    child.stderr.pipe(log);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => fail(new HostSetupError(`agent ${agent.name} did not start within 30 s; see ${agent.logFile}`)),
        30_000,
      );
      const fail = (err: Error): void => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(err);
      };
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('vmferry-agent ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        const tail = existsSync(agent.logFile)
          ? readFileSync(agent.logFile, 'utf8').trim().split('\n').slice(-5).join('\n')
          : '';
        fail(
          new HostSetupError(
            `agent ${agent.name} exited during start-up (${signal ?? `status ${code}`}): ${tail}`,
          ),
        );
      });
    });
    child.removeAllListeners('exit');
  }

  /** The lab's hosts, in order: a, b (and c). */
  get keys(): LabHostKey[] {
    return this.agents.c !== undefined ? ['a', 'b', 'c'] : ['a', 'b'];
  }

  /** Agent `key`; a three-host lab's c is asked of a two-host lab only by mistake. */
  agent(key: LabHostKey): LabAgent {
    const agent = this.agents[key];
    if (agent === undefined) throw new UsageError(`this lab has no host ${key}`);
    return agent;
  }

  /** The accelerator asked for agent `key`: auto, or the one pinned. */
  accelOf(key: LabHostKey): Accelerator | 'auto' {
    const accel = this.options.accel ?? 'auto';
    return typeof accel === 'string' ? accel : (accel[key] ?? 'auto');
  }

  /**
   * Starts both agents. With `auto`, one after the other so their probes do not
   * compete for the CPUs, and both must come to the same answer: a VM cannot move
   * between a KVM host and a TCG host.
   */
  async start(): Promise<this> {
    if (this.keys.some((key) => this.accelOf(key) !== 'auto')) {
      await Promise.all(this.keys.map((key) => this.startAgent(key)));
      return this;
    }
    for (const key of this.keys) await this.startAgent(key);
    const hosts = await Promise.all(this.keys.map((key) => this.hostSummary(key)));
    if (new Set(hosts.map((h) => h.accelerator)).size > 1) {
      throw new HostSetupError(
        `the lab agents chose different accelerators: ${hosts.map((h) => `${h.name} ${h.accelerator} (${h.acceleratorReason})`).join(', ')}`,
        { hint: 'pin one with the lab option accel (vmferry demo --accel tcg|kvm)' },
      );
    }
    return this;
  }

  /** What agent `key` says about its host (accelerator and why, QEMU, transports). */
  async hostSummary(key: LabHostKey): Promise<HostSummary> {
    return new AgentApi(this.client(key)).host();
  }

  /** Stops an agent: SIGTERM is graceful (aborts its outgoing migrations); SIGKILL is a crash. */
  async stopAgent(key: LabHostKey, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.agent(key).process;
    this.agent(key).process = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  /** An operator client for one agent (over its local socket, so it works from outside the namespaces). */
  client(key: LabHostKey): AgentClient {
    const c = new AgentClient(this.agent(key).localAddress, this.operator);
    this.clients.push(c);
    return c;
  }

  /** A client that presents `identity` instead of the operator's (to test refusals). */
  clientWith(key: LabHostKey, identity: TlsIdentity): AgentClient {
    const c = new AgentClient(this.agent(key).localAddress, identity);
    this.clients.push(c);
    return c;
  }

  /**
   * Hands a file a test made for a VM (a disk image) to the user the agents start QEMU as
   * (when they run as root): QEMU must be able to write it, and the agents check that it can.
   */
  giveToQemu(path: string): void {
    if (process.getuid?.() !== 0) return;
    const user = lookUpQemuUser('vmferry-qemu');
    chownSync(path, user.uid, user.gid);
  }

  /** Environment for running the vmferry CLI against agent `key`. */
  cliEnv(key: LabHostKey): NodeJS.ProcessEnv {
    return {
      ...process.env,
      VMFERRY_AGENT: this.agent(key).localAddress,
      VMFERRY_TLS_DIR: this.operatorDir,
    };
  }

  /** Stops both agents, kills every QEMU they started, removes namespaces and files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.clients) c.close();
    await Promise.all(this.keys.map((key) => this.stopAgent(key)));
    for (const agent of Object.values(this.agents)) killLeftoverQemu(agent.stateDir);
    this.network?.destroy();
    if (this.options.keep !== true) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Kills QEMU processes whose pid files are under an agent's state directory. */
export function killLeftoverQemu(stateDir: string): void {
  const vmsDir = join(stateDir, 'vms');
  if (!existsSync(vmsDir)) return;
  for (const name of readdirSync(vmsDir)) {
    const pidFile = join(vmsDir, name, 'qemu.pid');
    if (!existsSync(pidFile)) continue;
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes('qemu') && cmdline.includes(join(vmsDir, name))) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * argv that bind-mounts `mounts` first, then runs `argv`: inside `ip netns exec`, which
 * gives the command its own mount namespace, so nothing shows outside it.
 */
function withMounts(mounts: { source: string; target: string }[] | undefined, argv: string[]): string[] {
  if (mounts === undefined || mounts.length === 0) return argv;
  const script = `${mounts.map((_m, i) => `mount --bind "$${2 * i + 1}" "$${2 * i + 2}" && `).join('')}shift ${2 * mounts.length} && exec "$@"`;
  return ['sh', '-c', script, 'sh', ...mounts.flatMap((m) => [m.source, m.target]), ...argv];
}
