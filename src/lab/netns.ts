import { execFileSync, spawnSync } from 'node:child_process';
import { HostSetupError, UsageError } from '../errors.js';
import { runIp } from '../run-ip.js';

/** One simulated host: a network namespace with one end of the veth link. */
export interface LabHost {
  /** Network namespace name. */
  netns: string;
  /** veth interface inside the namespace. */
  device: string;
  /** Address on the link (198.18.0.0/24, the range reserved for benchmarking). */
  address: string;
  /**
   * The bridge VMs' NICs go on (same name on both hosts, as in a cloud), with
   * this host's address on it. The two hosts' bridges are joined by a second
   * veth pair: one L2 network for the guests, apart from the migration link.
   */
  bridge: { name: string; address: string; prefixLength: number; mac: string };
}

/** The name of the lab's guest bridge on every host. */
export const LAB_BRIDGE = 'br0';

export interface TwoHostNetwork {
  a: LabHost;
  b: LabHost;
  /** A third host, joined with the other two through a switch namespace. */
  c?: LabHost;
  /** Shapes both directions of the link to `gbps` (tc tbf); undefined = unshaped. */
  linkGbps: number | undefined;
  /**
   * Cuts the link between the hosts: every packet either host sends on it is
   * lost, as in a partition of a real network; connections stay open and see
   * nothing. The hosts' guest bridges and their local sockets are not touched.
   */
  cutLink(): void;
  /** Ends a cut: packets flow again (retransmissions get through). */
  restoreLink(): void;
  /** Removes both namespaces (and with them the veth pair). Safe to call twice. */
  destroy(): void;
}

function ip(args: string[]): void {
  runIp(args, 'network namespaces need root (CAP_NET_ADMIN) and iproute2');
}

export function canUseNetns(): boolean {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return false;
  return spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0;
}

function netnsExists(name: string): boolean {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').some((line) => line.split(' ')[0] === name);
}

/** Kills every process left in a namespace, then deletes it. */
export function removeNetns(name: string): void {
  if (!netnsExists(name)) return;
  const pids = (spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).stdout ?? '')
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
}

/**
 * `VMFERRY_LAB_TAG` (up to 3 lowercase letters or digits) is added to every
 * namespace and link name, so test runs from two checkouts on one machine do not
 * remove each other's hosts.
 */
export function labTag(): string {
  const tag = process.env.VMFERRY_LAB_TAG ?? '';
  if (!/^[a-z0-9]{0,3}$/.test(tag)) {
    throw new UsageError(
      `VMFERRY_LAB_TAG must be up to 3 lowercase letters or digits, got ${JSON.stringify(tag)}`,
    );
  }
  return tag;
}

/** Each host's guest bridge, the two joined by a veth pair `link` (a's end, b's end). */
function joinGuestBridges(a: LabHost, b: LabHost, link: { a: string; b: string }): void {
  ip(['link', 'add', link.a, 'type', 'veth', 'peer', 'name', link.b]);
  for (const key of ['a', 'b'] as const) {
    const h = key === 'a' ? a : b;
    ip(['link', 'set', link[key], 'netns', h.netns]);
    // A MAC of its own: otherwise the bridge takes the lowest of its ports' and changes with them.
    ip(['-n', h.netns, 'link', 'add', h.bridge.name, 'address', h.bridge.mac, 'type', 'bridge']);
    ip(['-n', h.netns, 'link', 'set', link[key], 'master', h.bridge.name]);
    ip(['-n', h.netns, 'addr', 'add', `${h.bridge.address}/${h.bridge.prefixLength}`, 'dev', h.bridge.name]);
    ip(['-n', h.netns, 'link', 'set', link[key], 'up']);
    ip(['-n', h.netns, 'link', 'set', h.bridge.name, 'up']);
  }
}

/** Shapes each host's end of the link to `gbps` with tc tbf. */
function shapeLink(hosts: readonly LabHost[], gbps: number): void {
  // Burst must cover a few ms at line rate or tbf cannot reach the rate.
  const burstBytes = Math.max(1 << 20, Math.round((gbps * 1e9) / 8 / 250));
  for (const h of hosts) {
    execFileSync('ip', [
      'netns',
      'exec',
      h.netns,
      'tc',
      'qdisc',
      'add',
      'dev',
      h.device,
      'root',
      'tbf',
      'rate',
      `${gbps}gbit`,
      'burst',
      String(burstBytes),
      'latency',
      '50ms',
    ]);
  }
}

/**
 * Cuts and restores the link between the hosts by taking `far`'s end of the veth
 * pair down and up, as a cable pulled out there: the other end loses its carrier
 * and drops what it sends without an error, `far` has no route any more, and
 * open connections see nothing until it comes back (retransmissions then get
 * through). A tc queue that drops would not do: the sender's socket gets
 * ENOBUFS and QEMU's TLS stream fails at once (and this kernel has no netem,
 * classifiers or tc actions). Queue disciplines on the device are kept.
 */
function linkSwitch(far: LabHost): Pick<TwoHostNetwork, 'cutLink' | 'restoreLink'> {
  const link = (state: 'up' | 'down'): void =>
    void execFileSync('ip', ['-n', far.netns, 'link', 'set', far.device, state], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  return { cutLink: () => link('down'), restoreLink: () => link('up') };
}

/**
 * Builds two "hosts" on this machine: network namespaces `<prefix>a` and
 * `<prefix>b` joined by a veth pair, addresses 198.18.<subnet>.1 and .2, loopback
 * up in each, optionally shaped with tc. Each also has a bridge br0 for guests,
 * 198.19.<subnet>.1 and .2, the two joined by another veth pair. Needs root.
 */
export function createTwoHostNetwork(options: {
  prefix: string;
  subnet?: number;
  linkGbps?: number;
}): TwoHostNetwork {
  const prefix = checkedPrefix(options.prefix);
  const subnet = checkedSubnet(options.subnet ?? 0);
  if (options.linkGbps !== undefined && !(options.linkGbps > 0 && options.linkGbps <= 400)) {
    throw new UsageError(`link speed must be between 0 and 400 Gbit/s, got ${options.linkGbps}`);
  }
  if (!canUseNetns()) {
    throw new HostSetupError('creating network namespaces needs root and iproute2', {
      hint: 'run as root, or use the loopback mode',
    });
  }
  const bridge = (host: number): LabHost['bridge'] => labBridge(subnet, host);
  const a: LabHost = {
    netns: `${prefix}a`,
    device: `${prefix}va`,
    address: `198.18.${subnet}.1`,
    bridge: bridge(1),
  };
  const b: LabHost = {
    netns: `${prefix}b`,
    device: `${prefix}vb`,
    address: `198.18.${subnet}.2`,
    bridge: bridge(2),
  };
  const guestLink = { a: `${prefix}na`, b: `${prefix}nb` };
  const destroy = (): void => {
    removeNetns(a.netns);
    removeNetns(b.netns);
    spawnSync('ip', ['link', 'del', a.device], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', guestLink.a], { stdio: 'ignore' });
  };
  destroy();
  try {
    ip(['netns', 'add', a.netns]);
    ip(['netns', 'add', b.netns]);
    ip(['link', 'add', a.device, 'type', 'veth', 'peer', 'name', b.device]);
    for (const h of [a, b]) {
      ip(['link', 'set', h.device, 'netns', h.netns]);
      ip(['-n', h.netns, 'addr', 'add', `${h.address}/24`, 'dev', h.device]);
      ip(['-n', h.netns, 'link', 'set', h.device, 'up']);
      ip(['-n', h.netns, 'link', 'set', 'lo', 'up']);
    }
    joinGuestBridges(a, b, guestLink);
    if (options.linkGbps !== undefined) shapeLink([a, b], options.linkGbps);
  } catch (err) {
    destroy();
    throw err;
  }
  return { a, b, linkGbps: options.linkGbps, ...linkSwitch(b), destroy };
}

/**
 * Three "hosts" on this machine: namespaces `<prefix>a`, `<prefix>b`, `<prefix>c`
 * each joined by a veth pair to a switch namespace `<prefix>sw` whose bridges
 * carry the migration network (198.18.<subnet>.1-3) and the guests' network
 * (br0 on each host, 198.19.<subnet>.1-3). Nothing is routed outside them. Needs root.
 */
export function createThreeHostNetwork(options: { prefix: string; subnet?: number }): TwoHostNetwork {
  const prefix = checkedPrefix(options.prefix);
  const subnet = checkedSubnet(options.subnet ?? 0);
  if (!canUseNetns()) {
    throw new HostSetupError('creating network namespaces needs root and iproute2', {
      hint: 'run as root, or use the loopback mode',
    });
  }
  const keys = ['a', 'b', 'c'] as const;
  const hosts = keys.map((key, i) => ({
    key,
    host: {
      netns: `${prefix}${key}`,
      device: `${prefix}v${key}`,
      address: `198.18.${subnet}.${i + 1}`,
      bridge: labBridge(subnet, i + 1),
    } satisfies LabHost,
  }));
  const sw = `${prefix}sw`;
  const destroy = (): void => {
    for (const { host } of hosts) removeNetns(host.netns);
    removeNetns(sw);
    for (const { key } of hosts) {
      spawnSync('ip', ['link', 'del', `${prefix}v${key}`], { stdio: 'ignore' });
      spawnSync('ip', ['link', 'del', `${prefix}n${key}`], { stdio: 'ignore' });
    }
  };
  destroy();
  try {
    ip(['netns', 'add', sw]);
    ip(['-n', sw, 'link', 'set', 'lo', 'up']);
    for (const bridge of ['sw0', 'gw0']) {
      ip(['-n', sw, 'link', 'add', bridge, 'type', 'bridge']);
      ip(['-n', sw, 'link', 'set', bridge, 'up']);
    }
    for (const { key, host } of hosts) {
      ip(['netns', 'add', host.netns]);
      ip(['-n', host.netns, 'link', 'set', 'lo', 'up']);
      // The migration link: host end gets the address, switch end goes on sw0.
      plugIntoSwitch(host.netns, host.device, sw, `${prefix}w${key}`, 'sw0');
      ip(['-n', host.netns, 'addr', 'add', `${host.address}/24`, 'dev', host.device]);
      // The guests' network: the host's br0 joined to gw0.
      ip(['-n', host.netns, 'link', 'add', host.bridge.name, 'address', host.bridge.mac, 'type', 'bridge']);
      plugIntoSwitch(host.netns, `${prefix}n${key}`, sw, `${prefix}g${key}`, 'gw0');
      ip(['-n', host.netns, 'link', 'set', `${prefix}n${key}`, 'master', host.bridge.name]);
      ip([
        '-n',
        host.netns,
        'addr',
        'add',
        `${host.bridge.address}/${host.bridge.prefixLength}`,
        'dev',
        host.bridge.name,
      ]);
      ip(['-n', host.netns, 'link', 'set', host.bridge.name, 'up']);
    }
  } catch (err) {
    destroy();
    throw err;
  }
  const [a, b, c] = hosts.map((h) => h.host);
  if (a === undefined || b === undefined || c === undefined) throw new Error('unreachable: three hosts');
  // A cut takes B off the switch: B is cut off from A (and from C).
  return { a, b, c, linkGbps: undefined, destroy, ...linkSwitch(b) };
}

/**
 * Host `host`'s guest bridge. It has a MAC of its own: a bridge without one takes
 * the lowest of its ports' MACs, which changes as taps come and go.
 */
function labBridge(subnet: number, host: number): LabHost['bridge'] {
  return {
    name: LAB_BRIDGE,
    address: `198.19.${subnet}.${host}`,
    prefixLength: 24,
    mac: `02:00:c6:13:${subnet.toString(16).padStart(2, '0')}:0${host}`,
  };
}

/** A veth pair from `hostNetns` (named `hostEnd`) to a bridge of the switch namespace, both ends up. */
function plugIntoSwitch(hostNetns: string, hostEnd: string, sw: string, swEnd: string, bridge: string): void {
  ip(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', swEnd]);
  ip(['link', 'set', hostEnd, 'netns', hostNetns]);
  ip(['link', 'set', swEnd, 'netns', sw]);
  ip(['-n', sw, 'link', 'set', swEnd, 'master', bridge]);
  ip(['-n', sw, 'link', 'set', swEnd, 'up']);
  ip(['-n', hostNetns, 'link', 'set', hostEnd, 'up']);
}

function checkedPrefix(base: string): string {
  const prefix = `${base}${labTag()}`;
  if (!/^[a-z][a-z0-9-]{0,10}$/.test(prefix)) {
    throw new UsageError(
      `namespace prefix ${JSON.stringify(prefix)} must be 1-11 lowercase letters, digits or dashes`,
    );
  }
  return prefix;
}

function checkedSubnet(subnet: number): number {
  if (!Number.isInteger(subnet) || subnet < 0 || subnet > 255) {
    throw new UsageError(`subnet must be 0-255, got ${subnet}`);
  }
  return subnet;
}

/** argv prefix that runs a command inside a namespace. */
export function inNetns(netns: string, argv: string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...argv];
}
