export { TlsFrontend, type TlsFrontendOptions, type AcceptTunnelOptions } from './tls-frontend.js';
export { WorkerPool, type WorkerPoolOptions, type WorkerStats, type TransportEvent } from './worker-pool.js';
export type { WorkerEvent } from './ipc-protocol.js';
export {
  SourceTunnel,
  openSourceTunnel,
  type SourceTunnelOptions,
  type TunnelStats,
  type TunnelRemote,
} from './source-tunnel.js';
export { NaiveTunnel, type NaiveTunnelStats } from './naive-tunnel.js';
export { DEFAULT_CIPHER_SUITES, resolveTuning, type RelayTuning } from './relay-tuning.js';
export {
  INTERNAL_SECRET_HEADER,
  MAX_API_BODY_BYTES,
  PEER_CN_HEADER,
  PEER_ROLE_HEADER,
  TOKEN_HEADER,
  TUNNEL_PROTOCOL,
  type TunnelRegistration,
} from './tunnel-policy.js';
export { listenPrivate, removeStaleSocket, type SocketOwner } from './private-socket.js';
export {
  NativeRelay,
  nativeRelayAvailability,
  nativeRelayPath,
  parseRelayEvent,
  encodeRelayConfig,
  type NativeRelayAvailability,
  type NativeRelayEvent,
  type NativeRelayStats,
  type NativeRelayTuning,
} from './native-relay.js';
