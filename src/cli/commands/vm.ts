import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { VmView } from '../../agent/index.js';
import { UsageError } from '../../errors.js';
import { guestAppend, guestKernelPath, guestRamMiB } from '../../guest/index.js';
import { validateVmSpec, type VmSpec } from '../../qemu/index.js';
import { connectAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import type { CommandModule } from '../command.js';
import { printJson, printLines, type CliIo } from '../io.js';

interface StartFlags extends AgentConnectionFlags {
  spec?: string;
  memory?: string;
  vcpus: string;
  kernel?: string;
  append?: string;
  workloadMib: string;
  dirtyMibps: string;
  json?: boolean;
}

function int(value: string, flag: string): number {
  if (!/^\d+$/.test(value))
    throw new UsageError(`${flag} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** A VM spec from --spec FILE, or from flags (default: the guest workload). Exported for tests. */
export function specFromFlags(name: string, flags: StartFlags): VmSpec {
  if (flags.spec !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(flags.spec, 'utf8'));
    } catch (err) {
      throw new UsageError(
        `cannot read VM spec ${flags.spec}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    return validateVmSpec({ ...(parsed as object), name });
  }
  const workload = int(flags.workloadMib, '--workload-mib');
  const dirty = int(flags.dirtyMibps, '--dirty-mibps');
  let append = flags.append;
  if (flags.kernel === undefined && append === undefined) {
    try {
      append = guestAppend({ memMiB: workload, dirtyMiBps: dirty });
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
  }
  return validateVmSpec({
    name,
    memoryMiB: flags.memory !== undefined ? int(flags.memory, '--memory') : guestRamMiB(workload),
    vcpus: int(flags.vcpus, '--vcpus'),
    kernel: resolve(flags.kernel ?? guestKernelPath()),
    ...(append !== undefined ? { append } : {}),
  });
}

function viewLine(vm: VmView): string {
  const g = vm.guest;
  const guest =
    g.lastSeq === undefined ? 'no heartbeat yet' : `guest ${g.health} (seq ${g.lastSeq}, ${g.status ?? '?'})`;
  return `${vm.name.padEnd(20)} ${vm.state.padEnd(10)} ${String(vm.memoryMiB).padStart(6)} MiB  ${vm.vcpus} vCPU  pid ${vm.pid ?? '-'}  ${guest}`;
}

export const vmCommand: CommandModule = {
  name: 'vm',
  register(program: Command, io: CliIo): void {
    const vm = program.command('vm').description('VMs on a host (through its agent)');
    withAgentOptions(
      vm.command('list').description('list the VMs an agent runs').option('--json', 'print JSON'),
    ).action(async (flags: AgentConnectionFlags & { json?: boolean }) => {
      const client = await connectAgent(io, flags);
      try {
        const { vms } = await client.get<{ vms: VmView[] }>('/v1/vms');
        if (flags.json === true) printJson(io, { vms });
        else printLines(io, vms.length === 0 ? ['no VMs'] : vms.map(viewLine));
      } finally {
        client.close();
      }
    });
    withAgentOptions(
      vm
        .command('show')
        .argument('<name>')
        .description('show one VM and its guest health')
        .option('--json', 'print JSON'),
    ).action(async (name: string, flags: AgentConnectionFlags & { json?: boolean }) => {
      const client = await connectAgent(io, flags);
      try {
        const view = await client.get<VmView>(`/v1/vms/${encodeURIComponent(name)}`);
        if (flags.json === true) printJson(io, view);
        else
          printLines(io, [
            viewLine(view),
            `  guest: ${view.guest.reason}`,
            `  spec:  ${JSON.stringify(view.spec)}`,
          ]);
      } finally {
        client.close();
      }
    });
    withAgentOptions(
      vm
        .command('start')
        .argument('<name>')
        .description('boot a VM (by default the self-verifying guest workload)')
        .option('--spec <file>', 'VM spec as JSON (name from the argument)')
        .option('--memory <MiB>', 'guest RAM (default: workload + 32 MiB)')
        .option('--vcpus <n>', 'virtual CPUs', '1')
        .option('--kernel <path>', 'kernel or multiboot image (default: the vmferry guest)')
        .option('--append <cmdline>', 'kernel command line')
        .option('--workload-mib <MiB>', 'guest workload: memory it fills and verifies', '256')
        .option('--dirty-mibps <MiB/s>', 'guest workload: rewrite rate', '16')
        .option('--json', 'print JSON'),
    ).action(async (name: string, flags: StartFlags) => {
      const spec = specFromFlags(name, flags);
      const client = await connectAgent(io, flags);
      try {
        const view = await client.post<VmView>('/v1/vms', spec, { timeoutMs: 60_000 });
        if (flags.json === true) printJson(io, view);
        else printLines(io, [`started ${view.name} (pid ${view.pid ?? '?'})`]);
      } finally {
        client.close();
      }
    });
    withAgentOptions(
      vm
        .command('stop')
        .argument('<name>')
        .description('shut a VM down (quit, then kill after 10 s)')
        .option('--json', 'print JSON'),
    ).action(async (name: string, flags: AgentConnectionFlags & { json?: boolean }) => {
      const client = await connectAgent(io, flags);
      try {
        await client.post(`/v1/vms/${encodeURIComponent(name)}/stop`, {}, { timeoutMs: 30_000 });
        if (flags.json === true) printJson(io, { stopped: name });
        else printLines(io, [`stopped ${name}`]);
      } finally {
        client.close();
      }
    });
  },
};
