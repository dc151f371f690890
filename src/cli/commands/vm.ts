import type { Command } from 'commander';
import type { VmView } from '../../agent/index.js';
import { withAgent, withAgentOptions, type AgentConnectionFlags } from '../agent-connection.js';
import type { CommandModule } from '../command.js';
import { printJson, printLines, type CliIo } from '../io.js';
import { registerVmConsole } from './vm-console.js';
import { registerVmImport } from './vm-import.js';
import { specFromFlags, type SpecFlags } from './vm-spec-flags.js';

export { specFromFlags } from './vm-spec-flags.js';

interface StartFlags extends AgentConnectionFlags, SpecFlags {
  json?: boolean;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
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
      await withAgent(io, flags, async (agent) => {
        const vms = await agent.vms();
        if (flags.json === true) printJson(io, { vms });
        else printLines(io, vms.length === 0 ? ['no VMs'] : vms.map(viewLine));
      });
    });
    withAgentOptions(
      vm
        .command('show')
        .argument('<name>')
        .description('show one VM, its guest health and its stored spec (machine, CPU, MACs filled in)')
        .option('--json', 'print JSON'),
    ).action(async (name: string, flags: AgentConnectionFlags & { json?: boolean }) => {
      await withAgent(io, flags, async (agent) => {
        const view = await agent.vm(name);
        if (flags.json === true) printJson(io, view);
        else
          printLines(io, [
            viewLine(view),
            `  host:  ${view.host}`,
            `  guest: ${view.guest.reason}`,
            `  spec:  ${JSON.stringify(view.spec)}`,
          ]);
      });
    });
    withAgentOptions(
      vm
        .command('start')
        .argument('<name>')
        .description('boot a VM from a spec (docs/vm-spec.md) or flags; by default the self-verifying guest')
        .option('--spec <file>', 'VM spec as JSON (name from the argument)')
        .option('--memory <MiB>', 'guest RAM (default for the guest workload: workload + 32 MiB)')
        .option('--vcpus <n>', 'virtual CPUs (default 1)')
        .option('--machine <type>', 'QEMU machine type (default: the newest versioned pc-i440fx here)')
        .option('--cpu <model>', 'CPU model (default: qemu64 under TCG, a named model under KVM)')
        .option('--kernel <path>', 'boot this kernel (default: the vmferry guest)')
        .option('--initrd <path>', 'initramfs for --kernel')
        .option('--append <cmdline>', 'kernel command line')
        .option('--boot-disk <index>', 'boot disk number INDEX through SeaBIOS instead of a kernel')
        .option(
          '--disk <path=...,format=raw|qcow2,storage=shared|local>',
          'a virtio-blk disk (repeat for more)',
          collect,
        )
        .option('--nic <bridge=BR[,mac=MAC]>', 'a virtio-net NIC on a host bridge (repeat for more)', collect)
        .option('--workload-mib <MiB>', 'guest workload: memory it fills and verifies (default 256)')
        .option('--dirty-mibps <MiB/s>', 'guest workload: rewrite rate (default 16)')
        .option('--json', 'print JSON'),
    ).action(async (name: string, flags: StartFlags) => {
      const spec = specFromFlags(name, flags);
      await withAgent(io, flags, async (agent) => {
        const view = await agent.startVm(spec);
        if (flags.json === true) printJson(io, view);
        else printLines(io, [`started ${view.name} (pid ${view.pid ?? '?'})`]);
      });
    });
    withAgentOptions(
      vm
        .command('stop')
        .argument('<name>')
        .description('shut a VM down (quit, then kill after 10 s)')
        .option('--json', 'print JSON'),
    ).action(async (name: string, flags: AgentConnectionFlags & { json?: boolean }) => {
      await withAgent(io, flags, async (agent) => {
        await agent.stopVm(name);
        if (flags.json === true) printJson(io, { stopped: name });
        else printLines(io, [`stopped ${name}`]);
      });
    });
    registerVmConsole(vm, io);
    registerVmImport(vm, io);
  },
};
