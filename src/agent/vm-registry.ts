import { chownSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConflictError, HostSetupError, NotFoundError, QemuProcessError, describeError } from '../errors.js';
import {
  QemuVm,
  completeVmSpec,
  runFiles,
  storedVmSpec,
  type Accelerator,
  type QmpClient,
  type SpecDefaults,
  type VmSpec,
  type VmSpecDraft,
} from '../qemu/index.js';
import {
  consoleTail,
  readConsole,
  writeConsoleHistory,
  type ConsoleChunk,
  type ConsoleTail,
} from './console-log.js';
import type { LogFn } from '../log/index.js';
import { whyUnreachable, type QemuUser } from './qemu-user.js';
import {
  checkVmCapacity,
  confineVmFiles,
  isInside,
  type VmCapacity,
  type VmFileDirs,
} from './vm-confinement.js';
import { GuestWatcher } from './guest-watcher.js';
import type { Journal, VmState } from './journal.js';
import type { JournalBacklog } from './journal-backlog.js';
import { tapMac, tapName, type HostNetwork } from './tap-devices.js';

export type { VmState } from './journal.js';

/** A VM this agent owns: its spec, its QEMU, and what its guest says. */
export interface ManagedVm {
  spec: VmSpec;
  state: VmState;
  runDir: string;
  qemu: QemuVm | undefined;
  /** The tap device of each NIC on this host, in spec order. */
  taps: string[];
  guest: GuestWatcher;
  /** The migration this VM is part of (incoming or outgoing), if any. */
  migrationId: string | undefined;
}

/** What `vm list` / `vm show` return for a VM. */
export interface VmView {
  name: string;
  /** The agent that runs it. */
  host: string;
  state: VmState;
  memoryMiB: number;
  vcpus: number;
  pid: number | undefined;
  migrationId: string | undefined;
  taps: string[];
  guest: {
    lastSeq: number | undefined;
    written: number | undefined;
    verified: number | undefined;
    status: 'ok' | 'corrupt' | undefined;
    health: string;
    reason: string;
  };
  spec: VmSpec;
}

export interface VmRegistryOptions {
  /** This host's agent name (tap device names derive from it). */
  hostName: string;
  stateDir: string;
  /** Where the images of local disks are (their spec paths are relative to it). */
  instancesPath: string;
  accel: Accelerator;
  /** What this host fills in for a new VM: machine type, CPU model. */
  specDefaults: SpecDefaults;
  /** Where NICs get their tap devices. */
  network: HostNetwork;
  qemuBinary?: string;
  journal: Journal;
  /** Where writes that must not stop what they record wait for a full disk (default: none, they throw). */
  backlog?: JournalBacklog;
  log: LogFn;
  /** Where the files of VM specs may lie ([vmferry] image_dirs, disk_dirs), symlinks resolved. */
  vmFileDirs: VmFileDirs;
  /** Test mode (`vmferry agent --test-mode`): specs may map guest RAM from a shared file. */
  testMode: boolean;
  /** What this host gives its VMs: memory in all, CPUs each. */
  capacity: VmCapacity;
  /** The user QEMU runs as, when the agent runs as root. */
  qemuUser?: QemuUser;
}

/**
 * When a VM's state must be journaled: `now` (before it changes here; a journal that
 * cannot take it fails the call and changes nothing) or `eventually` (it changes
 * here at once; the journal follows when the disk allows).
 */
export type JournalWhen = 'now' | 'eventually';

/**
 * The VMs of one host. QEMU processes are started in their own process group so
 * they outlive an agent restart; their run directories (monitor socket, serial
 * log, pid file) live under `<stateDir>/vms/<name>` and the journal remembers them.
 */
export class VmRegistry {
  private readonly vms = new Map<string, ManagedVm>();
  private readonly options: VmRegistryOptions;

  constructor(options: VmRegistryOptions) {
    this.options = options;
  }

  /** The accelerator this host runs its guests under. */
  get accelerator(): Accelerator {
    return this.options.accel;
  }

  /** Where the images of local disks are on this host. */
  get instancesPath(): string {
    return this.options.instancesPath;
  }

  /**
   * Hands disk images the agent made under instances_path (a block migration's
   * copies) to QEMU's user, with the folders between instances_path and them:
   * QEMU writes them, and the agent made them owner-only.
   */
  handToQemu(files: readonly string[]): void {
    const user = this.options.qemuUser;
    if (user === undefined) return;
    const root = this.options.instancesPath;
    for (const file of files) {
      for (let dir = dirname(file); isInside(dir, root); dir = dirname(dir))
        chownSync(dir, user.uid, user.gid);
      chownSync(file, user.uid, user.gid);
    }
  }

  runDirOf(name: string): string {
    return join(this.options.stateDir, 'vms', name);
  }

  get(name: string): ManagedVm {
    const vm = this.vms.get(name);
    if (vm === undefined) throw new NotFoundError(`no VM named ${name} on this host`);
    return vm;
  }

  has(name: string): boolean {
    return this.vms.has(name);
  }

  /** The monitor of a VM's QEMU, if the VM is known here and its QEMU is attached. */
  qmpOf(name: string): QmpClient | undefined {
    return this.vms.get(name)?.qemu?.qmp;
  }

  list(): ManagedVm[] {
    return [...this.vms.values()].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
  }

  /** Boots a new VM: its spec completed here (machine, CPU, MACs) and stored as it is then. */
  async start(draft: VmSpecDraft): Promise<ManagedVm> {
    return this.launch(completeVmSpec(draft, this.options.specDefaults), 'running', undefined);
  }

  /** Starts QEMU as a migration destination (`-incoming defer`, vCPUs stopped until the source hands over). */
  async prepareIncoming(spec: VmSpec, migrationId: string): Promise<ManagedVm> {
    return this.launch(spec, 'incoming', migrationId);
  }

  /** A VM's serial console (see readConsole). */
  console(name: string, options: { after?: number; lines?: number } = {}): ConsoleChunk {
    return readConsole(this.get(name).runDir, options);
  }

  /** The last of a VM's console, for the destination of its migration. */
  consoleTail(name: string): ConsoleTail {
    return consoleTail(this.get(name).runDir);
  }

  /** On a migration's destination, before the guest runs: the console the source had. */
  continueConsole(name: string, tail: ConsoleTail): void {
    writeConsoleHistory(this.get(name).runDir, tail);
  }

  setState(name: string, state: VmState, migrationId?: string, when: JournalWhen = 'now'): void {
    const vm = this.get(name);
    const before = { state: vm.state, migrationId: vm.migrationId };
    vm.state = state;
    vm.migrationId = migrationId;
    if (when === 'eventually') {
      this.persistEventually(vm);
      return;
    }
    try {
      this.persist(vm);
    } catch (err) {
      Object.assign(vm, before);
      throw err;
    }
  }

  /** Quits QEMU (gracefully, then by force) and forgets the VM. */
  async stop(name: string, options: { timeoutMs?: number } = {}): Promise<void> {
    const vm = this.get(name);
    if (vm.state === 'migrating' || vm.state === 'incoming') {
      throw new ConflictError(`VM ${name} is part of migration ${vm.migrationId ?? '?'}`, {
        hint: `abort the migration first: vmferry migrate --abort ${vm.migrationId ?? 'ID'}`,
      });
    }
    await this.destroy(name, options.timeoutMs ?? 10_000);
  }

  /** Stops and forgets a VM whatever its state (used after it migrated away, or to drop a failed incoming VM). */
  async destroy(name: string, timeoutMs = 10_000): Promise<void> {
    const vm = this.vms.get(name);
    if (vm === undefined) return;
    vm.guest.stop();
    if (vm.qemu !== undefined) await vm.qemu.stop(timeoutMs);
    this.removeTaps(vm);
    this.vms.delete(name);
    rmSync(vm.runDir, { recursive: true, force: true });
    // Its QEMU is gone whatever the journal says: a failed write waits for the disk.
    this.forgetEventually(name);
  }

  /**
   * After an agent restart: reattach to every QEMU the journal knows through its
   * monitor socket. A VM whose QEMU is gone is kept as `crashed` so the operator sees it.
   */
  async reattach(): Promise<void> {
    for (const record of this.options.journal.listVms()) {
      const spec = storedVmSpec(record.spec);
      const runDir = this.runDirOf(spec.name);
      const guest = new GuestWatcher(runFiles(runDir).serialLog);
      const vm: ManagedVm = {
        spec,
        state: record.state,
        runDir,
        qemu: undefined,
        taps: this.tapsOf(spec),
        guest,
        migrationId: undefined,
      };
      this.vms.set(spec.name, vm);
      const pid = record.pid ?? readPid(runDir);
      try {
        if (pid === undefined) throw new QemuProcessError('no pid recorded');
        vm.qemu = await QemuVm.attach(spec.name, runDir, pid);
        this.watchExit(vm);
        this.options.log(`reattached to VM ${spec.name} (pid ${pid}, ${vm.state})`, { vm: spec.name });
      } catch (err) {
        vm.state = 'failed';
        this.persistEventually(vm);
        this.removeTaps(vm);
        this.options.log(`VM ${spec.name} is gone: ${describeError(err)}`, { level: 'warn', vm: spec.name });
      }
    }
  }

  view(vm: ManagedVm): VmView {
    const last = vm.guest.last;
    const health = vm.guest.health({ minOk: 1 });
    return {
      name: vm.spec.name,
      host: this.options.hostName,
      state: vm.state,
      memoryMiB: vm.spec.memoryMiB,
      vcpus: vm.spec.vcpus,
      pid: vm.qemu?.pid,
      migrationId: vm.migrationId,
      taps: vm.taps,
      guest: {
        lastSeq: last?.seq,
        written: last?.written,
        verified: last?.verified,
        status: last?.status,
        health: health.state,
        reason: health.reason,
      },
      spec: vm.spec,
    };
  }

  /** Stops watching serial logs; QEMU processes keep running (they belong to the host, not the agent process). */
  detachAll(): void {
    for (const vm of this.vms.values()) {
      vm.guest.stop();
      vm.qemu?.qmp.close();
    }
  }

  /**
   * What this host checks of every spec it is asked to run (started here or arriving
   * by migration): it fits the host, and QEMU may open each of its files: in the
   * configured directories after symlinks are resolved, and reachable by QEMU's user.
   */
  private admit(spec: VmSpec): void {
    const { vmFileDirs, testMode, capacity, qemuUser } = this.options;
    checkVmCapacity(
      spec,
      this.list().map((vm) => vm.spec),
      capacity,
    );
    const { instancesPath } = this.options;
    const real = existsSync(instancesPath) ? realpathSync(instancesPath) : instancesPath;
    const files = confineVmFiles(
      spec,
      { imageDirs: vmFileDirs.imageDirs, diskDirs: [...vmFileDirs.diskDirs, real] },
      { testMode, realpath: (p) => realpathSync(p), instancesPath },
    );
    if (qemuUser === undefined) return;
    for (const file of files) {
      const want = file.use === 'image' ? (['r'] as const) : (['r', 'w'] as const);
      const why = existsSync(file.path)
        ? whyUnreachable(qemuUser, file.path, want)
        : whyUnreachable(qemuUser, dirname(file.path), ['w', 'x']);
      if (why !== undefined) {
        throw new HostSetupError(
          `VM ${spec.name}: ${file.field}: QEMU runs as ${qemuUser.name}, and ${why}`,
          {
            hint: `give it to that user: chown ${qemuUser.name} ${file.path}${file.use === 'image' ? ', or make it readable by all' : ''}`,
          },
        );
      }
    }
  }

  private async launch(spec: VmSpec, state: VmState, migrationId: string | undefined): Promise<ManagedVm> {
    if (this.vms.has(spec.name))
      throw new ConflictError(`a VM named ${spec.name} already exists on this host`);
    const { network } = this.options;
    for (const [i, nic] of spec.nics.entries()) {
      if (!network.bridgeExists(nic.bridge)) {
        throw new HostSetupError(
          `VM ${spec.name}: nics[${i}].bridge ${JSON.stringify(nic.bridge)} does not exist on ${this.options.hostName}`,
          {
            hint: `create it (ip link add ${nic.bridge} type bridge) or give the NIC a bridge this host has`,
          },
        );
      }
    }
    this.admit(spec);
    const runDir = this.runDirOf(spec.name);
    rmSync(runDir, { recursive: true, force: true });
    const { qemuUser } = this.options;
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    if (qemuUser !== undefined) chownSync(runDir, qemuUser.uid, qemuUser.gid);
    const guest = new GuestWatcher(runFiles(runDir).serialLog);
    const vm: ManagedVm = {
      spec,
      state,
      runDir,
      qemu: undefined,
      taps: this.tapsOf(spec),
      guest,
      migrationId,
    };
    this.vms.set(spec.name, vm);
    try {
      for (const [i, tap] of vm.taps.entries()) {
        const nic = spec.nics[i];
        if (nic !== undefined) network.createTap(tap, nic.bridge, tapMac(nic.mac), qemuUser);
      }
      vm.qemu = await QemuVm.launch(spec, {
        accel: this.options.accel,
        runDir,
        taps: vm.taps,
        instancesPath: this.options.instancesPath,
        qemuBinary: this.options.qemuBinary,
        ...(qemuUser !== undefined ? { runAs: qemuUser.name } : {}),
        ...(state === 'incoming' ? { incoming: 'defer' as const, paused: true } : {}),
      });
      // A VM the journal cannot record must not run: a restarted agent would not know it.
      this.persist(vm);
    } catch (err) {
      if (vm.qemu !== undefined) await vm.qemu.stop(2000).catch(() => undefined);
      guest.stop();
      this.removeTaps(vm);
      this.vms.delete(spec.name);
      rmSync(runDir, { recursive: true, force: true });
      throw err;
    }
    this.watchExit(vm);
    this.options.log(`started VM ${spec.name} (pid ${vm.qemu.pid}, ${state})`, { vm: spec.name });
    return vm;
  }

  private watchExit(vm: ManagedVm): void {
    const qemu = vm.qemu;
    if (qemu === undefined) return;
    void qemu.exited.then((exit) => {
      if (this.vms.get(vm.spec.name) !== vm || vm.qemu !== qemu) return;
      vm.state = 'failed';
      vm.guest.stop();
      this.persistEventually(vm);
      this.removeTaps(vm);
      this.options.log(`QEMU of VM ${vm.spec.name} exited (${exit.signal ?? `status ${exit.code}`})`, {
        vm: vm.spec.name,
      });
    });
  }

  private tapsOf(spec: VmSpec): string[] {
    return spec.nics.map((_nic, i) => tapName(this.options.hostName, spec.name, i));
  }

  /** Its QEMU is gone (stopped, migrated away, died): its taps go too. */
  private removeTaps(vm: ManagedVm): void {
    for (const tap of vm.taps) {
      try {
        this.options.network.removeTap(tap);
      } catch (err) {
        this.options.log(`VM ${vm.spec.name}: cannot remove tap ${tap}: ${describeError(err)}`);
      }
    }
  }

  private persist(vm: ManagedVm, journal: Journal = this.options.journal): void {
    const files = runFiles(vm.runDir);
    journal.upsertVm({
      name: vm.spec.name,
      spec: vm.spec,
      state: vm.state,
      pid: vm.qemu?.pid ?? null,
      qmpSocket: files.qmpSocket,
      serialLog: files.serialLog,
    });
  }

  /** Journals the VM as it is now, when the disk allows (a VM forgotten meanwhile stays forgotten). */
  private persistEventually(vm: ManagedVm): void {
    const { backlog } = this.options;
    if (backlog === undefined) return this.persist(vm);
    const snapshot: ManagedVm = { ...vm };
    backlog.later(`VM ${vm.spec.name} ${vm.state}`, (journal) => {
      if (this.vms.get(vm.spec.name) === vm) this.persist(snapshot, journal);
    });
  }

  private forgetEventually(name: string): void {
    const { backlog, journal } = this.options;
    if (backlog === undefined) journal.deleteVm(name);
    else
      backlog.later(`VM ${name} forgotten`, (j) => {
        if (!this.vms.has(name)) j.deleteVm(name);
      });
  }
}

function readPid(runDir: string): number | undefined {
  const file = runFiles(runDir).pidFile;
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}
