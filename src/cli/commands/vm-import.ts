import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError, describeError } from '../../errors.js';
import { importLibvirtDomain, parseXml } from '../../libvirt/index.js';
import { printJson, printLines, type CliIo } from '../io.js';

interface ImportFlags {
  name?: string;
  out?: string;
  json?: boolean;
}

/** `vmferry vm import FILE.xml`: a libvirt domain (virsh dumpxml) as a vmferry spec, and what it leaves out. */
export function registerVmImport(vm: Command, io: CliIo): void {
  vm.command('import')
    .argument('<file>', 'a libvirt domain XML, as virsh dumpxml prints it')
    .description('turn a libvirt domain XML into a vmferry VM spec, listing what it cannot carry over')
    .option('--name <name>', 'the VM name (default: the domain name)')
    .option('--out <file>', 'write the spec to FILE (for vmferry vm start NAME --spec FILE)')
    .option('--json', 'print {name, spec, notCarriedOver, assumptions}')
    .action((file: string, flags: ImportFlags) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${describeError(err)}`);
      }
      const result = importLibvirtDomain(
        parseXml(text, file),
        flags.name !== undefined ? { name: flags.name } : {},
      );
      const specJson = `${JSON.stringify(result.spec, null, 2)}\n`;
      if (flags.out !== undefined) writeFileSync(flags.out, specJson);
      if (flags.json === true) {
        printJson(io, { name: result.spec.name, ...result });
        return;
      }
      // The spec alone on stdout (vm import X.xml > spec.json), what it leaves out beside it.
      if (flags.out === undefined) io.stdout.write(specJson);
      else printLines(io, [`wrote the spec of ${result.spec.name} to ${flags.out}`]);
      const report = flags.out === undefined ? io.stderr : io.stdout;
      const lines = [
        result.notCarriedOver.length === 0
          ? 'not carried over: nothing'
          : `not carried over (${result.notCarriedOver.length}):`,
        ...result.notCarriedOver.map((l) => `  ${l.element}: ${l.reason}`),
        ...(result.assumptions.length > 0 ? ['assumed:', ...result.assumptions.map((a) => `  ${a}`)] : []),
      ];
      report.write(`${lines.join('\n')}\n`);
    });
}
