import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { runIp } from '../run-ip.js';

/**
 * The tap device of a VM's NIC on a host: `vmf` and 12 hex digits of a hash of
 * host, VM and NIC index, so it fits Linux's 15 characters, never depends on
 * what else exists, and differs between the two ends of a migration (both
 * taps exist during the hand-over, on one machine too in loopback labs).
 */
export function tapName(host: string, vm: string, nicIndex: number): string {
  const digest = createHash('sha256').update(`${host}\0${vm}\0${nicIndex}`).digest('hex');
  return `vmf${digest.slice(0, 12)}`;
}

/**
 * The host side's MAC for a NIC's tap: the guest's with the first byte 0xfe, as
 * libvirt does. A Linux bridge without a MAC of its own takes the lowest of its
 * ports'; a tap with a low random MAC would change the bridge's MAC when it
 * comes and goes, and guests that cached the old one lose the host (seen here:
 * pings to the bridge unanswered for seconds after a migration).
 */
export function tapMac(guestMac: string): string {
  return `fe${guestMac.slice(2)}`;
}

/** What the agent does to a host's network for its VMs' NICs (the `ip` command, or a test's stand-in). */
export interface HostNetwork {
  bridgeExists(bridge: string): boolean;
  /**
   * Creates a tap with MAC `mac` on `bridge`, up; one left by an earlier run of the same VM is replaced.
   * With `owner`, that user (QEMU's, when the agent is root) may attach to it.
   */
  createTap(tap: string, bridge: string, mac: string, owner?: { uid: number; gid: number }): void;
  /** Removes a tap; one that is already gone is fine. */
  removeTap(tap: string): void;
  tapExists(tap: string): boolean;
}

function ip(args: string[]): void {
  runIp(args, 'the agent needs CAP_NET_ADMIN (root) and iproute2 to give VMs tap devices');
}

/** The host's network through iproute2 (persistent taps: they outlive QEMU until the agent removes them). */
export const linuxHostNetwork: HostNetwork = {
  bridgeExists: (bridge) => existsSync(`/sys/class/net/${bridge}/bridge`),
  tapExists: (tap) => existsSync(`/sys/class/net/${tap}`),
  createTap(tap, bridge, mac, owner) {
    if (this.tapExists(tap)) ip(['link', 'del', tap]);
    const user = owner !== undefined ? ['user', String(owner.uid), 'group', String(owner.gid)] : [];
    ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap', ...user]);
    try {
      ip(['link', 'set', tap, 'address', mac]);
      ip(['link', 'set', tap, 'master', bridge]);
      ip(['link', 'set', tap, 'up']);
    } catch (err) {
      ip(['link', 'del', tap]);
      throw err;
    }
  },
  removeTap(tap) {
    if (this.tapExists(tap)) ip(['link', 'del', tap]);
  },
};
