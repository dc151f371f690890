import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeError } from '../errors.js';
import { qemuTlsCredsObject } from '../pki/index.js';
import { cpuModelsFromQmp, type CpuModel } from './cpu-models.js';
import { machineTypesFromQmp, type MachineType } from './machine-types.js';
import { DEFAULT_QEMU_BINARY, QemuVm } from './qemu-process.js';
import { runFiles } from './vm-spec.js';

/** What this host's QEMU binary offers for migration, read from QEMU itself. */
export interface QemuFeatures {
  qemuVersion: string;
  qemuPackage: string;
  /** Names listed by query-migrate-capabilities (multifd, postcopy-ram, auto-converge...). */
  migrationCapabilities: string[];
  /** Names of the parameters query-migrate-parameters reports. */
  migrationParameters: string[];
  /** query-machines: the machine types this QEMU offers. */
  machines: MachineType[];
  /** query-cpu-definitions: the CPU models this QEMU knows (under TCG). */
  cpuModels: string[];
  tls: {
    /** QEMU was built with TLS (gnutls): the tls-creds-x509 object type exists. */
    supported: boolean;
    /** When a credentials directory was given: whether QEMU could load it. */
    credentials?: { dir: string; usable: boolean; error?: string };
  };
}

/**
 * Starts a machine-less QEMU and asks it what it supports. When `tlsCredsDir` is
 * given, also checks that QEMU loads those x509 credentials as client and server.
 */
export async function probeQemuFeatures(
  options: { qemuBinary?: string; tlsCredsDir?: string } = {},
): Promise<QemuFeatures> {
  const runDir = mkdtempSync(join(tmpdir(), 'vmf-caps-'));
  const qmpSocket = runFiles(runDir).qmpSocket;
  const argv = [
    '-nodefaults',
    '-no-user-config',
    '-machine',
    'none',
    '-display',
    'none',
    '-chardev',
    `socket,id=qmp0,path=${qmpSocket},server=on,wait=off`,
    '-mon',
    'chardev=qmp0,mode=control',
  ];
  const vm = await QemuVm.start(
    'capabilities-probe',
    runDir,
    options.qemuBinary ?? DEFAULT_QEMU_BINARY,
    argv,
  );
  try {
    const version = await vm.qmp.execute<{
      qemu: { major: number; minor: number; micro: number };
      package: string;
    }>('query-version');
    const caps = await vm.qmp.execute<{ capability: string }[]>('query-migrate-capabilities');
    const params = await vm.qmp.execute<Record<string, unknown>>('query-migrate-parameters');
    const types = await vm.qmp.execute<{ name: string }[]>('qom-list-types', { implements: 'tls-creds' });
    const machines =
      await vm.qmp.execute<{ name: string; alias?: string; 'is-default'?: boolean }[]>('query-machines');
    const cpus = await vm.qmp.execute<{ name: string }[]>('query-cpu-definitions');
    const supported = types.some((t) => t.name === 'tls-creds-x509');
    const result: QemuFeatures = {
      qemuVersion: `${version.qemu.major}.${version.qemu.minor}.${version.qemu.micro}`,
      qemuPackage: version.package.trim(),
      migrationCapabilities: caps.map((c) => c.capability).sort(),
      migrationParameters: Object.keys(params).sort(),
      machines: machineTypesFromQmp(machines),
      cpuModels: cpus.map((c) => c.name).sort(),
      tls: { supported },
    };
    if (options.tlsCredsDir !== undefined) {
      const dir = options.tlsCredsDir;
      try {
        for (const endpoint of ['client', 'server'] as const) {
          const id = `probe-tls-${endpoint}`;
          await vm.qmp.execute('object-add', qemuTlsCredsObject(id, dir, endpoint));
          await vm.qmp.execute('object-del', { id });
        }
        result.tls.credentials = { dir, usable: true };
      } catch (err) {
        result.tls.credentials = { dir, usable: false, error: describeError(err) };
      }
    }
    return result;
  } finally {
    await vm.stop(3000);
    rmSync(runDir, { recursive: true, force: true });
  }
}

/**
 * The CPU models and what each lacks on this host under KVM: what a KVM
 * host's default CPU model is chosen from (QEMU answers per accelerator).
 */
export async function probeKvmCpuModels(options: { qemuBinary?: string } = {}): Promise<CpuModel[]> {
  const runDir = mkdtempSync(join(tmpdir(), 'vmf-cpus-'));
  const argv = [
    '-nodefaults',
    '-no-user-config',
    '-machine',
    'none',
    '-accel',
    'kvm',
    '-display',
    'none',
    '-chardev',
    `socket,id=qmp0,path=${runFiles(runDir).qmpSocket},server=on,wait=off`,
    '-mon',
    'chardev=qmp0,mode=control',
  ];
  const vm = await QemuVm.start('cpu-probe', runDir, options.qemuBinary ?? DEFAULT_QEMU_BINARY, argv);
  try {
    return cpuModelsFromQmp(await vm.qmp.execute('query-cpu-definitions'));
  } finally {
    await vm.stop(3000);
    rmSync(runDir, { recursive: true, force: true });
  }
}
