import { UsageError } from '../errors.js';

/** One machine type as QEMU's query-machines lists it. */
export interface MachineType {
  name: string;
  /** The short name that points at it (`pc`, `q35`). */
  alias?: string;
  isDefault?: boolean;
  deprecated?: boolean;
}

/** The machine types from a query-machines answer. */
export function machineTypesFromQmp(
  list: readonly { name: string; alias?: string; 'is-default'?: boolean; deprecated?: boolean }[],
): MachineType[] {
  return list
    .map((m) => ({
      name: m.name,
      ...(m.alias !== undefined ? { alias: m.alias } : {}),
      ...(m['is-default'] === true ? { isDefault: true } : {}),
      ...(m.deprecated === true ? { deprecated: true } : {}),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

const VERSIONED = /^pc-(i440fx|q35)-(\d+)\.(\d+)$/;

function version(name: string): [number, number] | undefined {
  const m = VERSIONED.exec(name);
  return m === null ? undefined : [Number(m[2]), Number(m[3])];
}

/** The family of a versioned PC machine type: `i440fx`, `q35`, or undefined for anything else. */
export function machineFamily(name: string): 'i440fx' | 'q35' | undefined {
  const m = VERSIONED.exec(name) ?? /^(?:pc-)?(q35)$|^pc$/.exec(name);
  if (m === null) return undefined;
  return m[1] === 'q35' ? 'q35' : 'i440fx';
}

function newestFirst(machines: readonly MachineType[], family: string): string[] {
  return machines
    .filter((m) => machineFamily(m.name) === family && version(m.name) !== undefined)
    .map((m) => m.name)
    .sort((a, b) => {
      const [am, an] = version(a) ?? [0, 0];
      const [bm, bn] = version(b) ?? [0, 0];
      return bm - am || bn - an;
    });
}

/**
 * The machine type a new VM gets: the newest versioned pc-i440fx-X.Y (or
 * pc-q35-X.Y when QEMU's default machine is a q35, or when it offers no
 * i440fx). Versioned, so a VM keeps its virtual hardware when a host's QEMU
 * is upgraded and `pc` starts to mean a newer machine.
 */
export function defaultMachineType(machines: readonly MachineType[]): string | undefined {
  const preferred = machineFamily(machines.find((m) => m.isDefault === true)?.name ?? '') ?? 'i440fx';
  const other = preferred === 'i440fx' ? 'q35' : 'i440fx';
  return newestFirst(machines, preferred)[0] ?? newestFirst(machines, other)[0];
}

/**
 * The machine type to store in a new VM's spec: the one asked for (an alias
 * such as `pc` or `q35` becomes the versioned type it stands for on this host),
 * or the default. Refused, naming the value, when this host's QEMU lacks it or
 * it is not a PC machine.
 */
export function resolveMachineType(
  vm: string,
  requested: string | undefined,
  machines: readonly MachineType[],
): string {
  const offered = [
    ...newestFirst(machines, 'i440fx').slice(0, 3),
    ...newestFirst(machines, 'q35').slice(0, 3),
  ];
  const hint = `this host's QEMU offers ${offered.join(', ') || 'no versioned PC machine'}, and older ones (qemu-system-x86_64 -machine help)`;
  if (requested === undefined) {
    const chosen = defaultMachineType(machines);
    if (chosen === undefined) {
      throw new UsageError(`VM ${vm}: this host's QEMU offers no pc-i440fx-* or pc-q35-* machine type`, {
        hint,
      });
    }
    return chosen;
  }
  if (machineFamily(requested) === undefined) {
    throw new UsageError(
      `VM ${vm}: machine ${JSON.stringify(requested)} is not a PC machine type (pc-i440fx-* or pc-q35-*)`,
      { hint },
    );
  }
  const byAlias = machines.find((m) => m.alias === requested);
  if (byAlias !== undefined) return byAlias.name;
  if (machines.some((m) => m.name === requested)) return requested;
  throw new UsageError(`VM ${vm}: machine ${JSON.stringify(requested)} is not offered by this host's QEMU`, {
    hint,
  });
}
