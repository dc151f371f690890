/** What a host's QEMU (and vmferry's set-up on it) can do for a migration. */
export interface HostCapabilities {
  /** QEMU TLS is usable: tls-creds-x509 with certificates from vmferry's CA in place. */
  readonly nativeTls: boolean;
  /** QEMU multifd (several channels, one connection each). */
  readonly multifd: boolean;
  /** Post-copy (needs userfaultfd on the destination). */
  readonly postcopy: boolean;
  /** Auto-converge CPU throttling (source side). */
  readonly autoConverge: boolean;
  /** CPUs of the host, when known: the default channel count is sized to them. */
  readonly cpus?: number;
  /** QEMU's version (major.minor.micro), when known: the transport's default follows the benchmark of that version. */
  readonly qemuVersion?: string;
  /** The relay this host's agent runs for its end of tunnelled migrations, and why (decideTunnelRelay). */
  readonly tunnelRelay?: TunnelRelay;
}

/** The two tunnel relays: the native process (native/vmferry-relay.c) or the front door's TypeScript workers. */
export type TunnelRelayKind = 'native' | 'node';

export interface TunnelRelay {
  readonly kind: TunnelRelayKind;
  readonly reason: string;
}

/** What QEMU 7.2 on a host with vmferry's certificates in place offers. */
export const FULL_CAPABILITIES: HostCapabilities = Object.freeze({
  nativeTls: true,
  multifd: true,
  postcopy: true,
  autoConverge: true,
});
