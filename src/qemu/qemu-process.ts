import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { QemuProcessError, QmpConnectionError, describeError } from '../errors.js';
import { QmpClient } from './qmp-client.js';
import { buildQemuArgv } from './qemu-argv.js';
import { QEMU_SANDBOX, runFiles, type LaunchOptions, type VmSpec } from './vm-spec.js';

export interface QemuExit {
  code: number | null;
  signal: string | null;
}

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';

/** The last lines QEMU wrote to its log, for error messages. */
export function qemuLogTail(runDir: string, lines = 8): string {
  const { qemuLog } = runFiles(runDir);
  if (!existsSync(qemuLog)) return '';
  const text = readFileSync(qemuLog, 'utf8').trim();
  return text.split('\n').slice(-lines).join('\n');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie has exited; treat it as gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** True when `pid` is a QEMU process whose command line names `runDir`: guards against pid reuse. */
export function isQemuOf(pid: number, runDir: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('qemu') && cmdline.includes(runFiles(runDir).qmpSocket);
  } catch {
    return false;
  }
}

/**
 * A running QEMU process with its monitor connected. Started by {@link QemuVm.launch},
 * or re-attached after an agent restart by {@link QemuVm.attach} (QEMU runs in its
 * own process group, so it outlives the agent that started it).
 */
export class QemuVm {
  readonly name: string;
  readonly runDir: string;
  readonly pid: number;
  readonly qmp: QmpClient;
  /** Resolves when the QEMU process is gone. */
  readonly exited: Promise<QemuExit>;
  private gone = false;

  private constructor(name: string, runDir: string, pid: number, qmp: QmpClient, exited: Promise<QemuExit>) {
    this.name = name;
    this.runDir = runDir;
    this.pid = pid;
    this.qmp = qmp;
    this.exited = exited.then((e) => {
      this.gone = true;
      return e;
    });
  }

  get alive(): boolean {
    return !this.gone;
  }

  /** Starts QEMU for `spec` and connects to its monitor. Fails with QEMU's own words when it does not start. */
  static async launch(spec: VmSpec, options: LaunchOptions): Promise<QemuVm> {
    mkdirSync(options.runDir, { recursive: true, mode: 0o700 });
    const argv = [...buildQemuArgv(spec, options), ...QEMU_SANDBOX];
    const binary = options.qemuBinary ?? DEFAULT_QEMU_BINARY;
    if (options.runAs === undefined) return QemuVm.start(spec.name, options.runDir, binary, argv);
    // setpriv execs QEMU in its place (same pid) as the user, with its groups (kvm) and no capabilities.
    return QemuVm.start(spec.name, options.runDir, 'setpriv', [
      `--reuid=${options.runAs}`,
      `--regid=${options.runAs}`,
      '--init-groups',
      '--bounding-set=-all',
      '--',
      binary,
      ...argv,
    ]);
  }

  /** Starts QEMU with a ready-made argv whose monitor is at runFiles(runDir).qmpSocket. */
  static async start(name: string, runDir: string, binary: string, argv: string[]): Promise<QemuVm> {
    const files = runFiles(runDir);
    const logFd = openSync(files.qemuLog, 'a');
    let child;
    try {
      child = spawn(binary, argv, { detached: true, stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<QemuExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    child.unref();
    let exitedEarly: QemuExit | undefined;
    void exited.then((e) => (exitedEarly = e));

    const deadline = Date.now() + 15_000;
    for (;;) {
      const failure = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
      if (failure !== undefined) {
        throw new QemuProcessError(`cannot run ${binary}: ${failure.message}`, {
          hint: 'install QEMU (apt-get install qemu-system-x86) or run npm run setup',
          cause: failure,
        });
      }
      if (exitedEarly !== undefined) {
        const tail = qemuLogTail(runDir);
        throw new QemuProcessError(
          `QEMU for ${name} exited at start (${exitedEarly.signal ?? `status ${exitedEarly.code}`})${tail ? `: ${tail}` : ''}`,
        );
      }
      if (existsSync(files.qmpSocket)) {
        try {
          const qmp = await QmpClient.connect(files.qmpSocket, { timeoutMs: 5000 });
          return new QemuVm(name, runDir, child.pid ?? -1, qmp, exited);
        } catch (err) {
          if (!(err instanceof QmpConnectionError) || Date.now() > deadline) throw err;
        }
      }
      if (Date.now() > deadline) {
        if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        throw new QemuProcessError(
          `QEMU for ${name} did not open its monitor within 15 s: ${qemuLogTail(runDir)}`,
        );
      }
    }
  }

  /** Re-attaches to a QEMU started earlier (by this or a previous agent) through its monitor socket. */
  static async attach(name: string, runDir: string, pid: number): Promise<QemuVm> {
    if (!pidAlive(pid) || !isQemuOf(pid, runDir)) {
      throw new QemuProcessError(`QEMU for ${name} (pid ${pid}) is no longer running`);
    }
    const qmp = await QmpClient.connect(runFiles(runDir).qmpSocket, { timeoutMs: 5000 });
    const exited = new Promise<QemuExit>((resolve) => {
      const poll = (): void => {
        if (!pidAlive(pid)) resolve({ code: null, signal: null });
        else setTimeout(poll, 200).unref();
      };
      qmp.onClose(poll);
    });
    return new QemuVm(name, runDir, pid, qmp, exited);
  }

  /** Asks QEMU to quit; kills it when it has not exited after `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<QemuExit> {
    if (this.alive) {
      try {
        await this.qmp.execute('quit', undefined, { timeoutMs: Math.min(timeoutMs, 5000) });
      } catch {
        // The monitor may close before the reply: that is QEMU quitting.
      }
      const ac = new AbortController();
      const quitInTime = await Promise.race([
        this.exited.then(() => true),
        sleep(timeoutMs, false, { signal: ac.signal }).catch(() => false),
      ]);
      ac.abort();
      if (!quitInTime) this.kill('SIGKILL');
    }
    this.qmp.close();
    return this.exited;
  }

  /** Sends a signal to QEMU; used for forced stops and by tests that kill a QEMU on purpose. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') {
        throw new QemuProcessError(`cannot signal QEMU ${this.pid}: ${describeError(err)}`, { cause: err });
      }
    }
  }
}
