/**
 * The QMP commands of a block migration, as pure builders, and readers of
 * QEMU's answers. The sequence follows QEMU's docs/interop/live-block-operations.rst
 * ("QMP invocation for live storage migration with drive-mirror + NBD", and its
 * notes on blockdev-mirror) and libvirt's qemuMigrationSrcNBDStorageCopy /
 * qemuMigrationSrcNBDCopyCancel: the destination exports its new images from its
 * QEMU's NBD server; the source mirrors each disk into an NBD node; RAM
 * migration starts once every mirror is ready; at the switch-over (the source
 * paused before its device state goes, `pause-before-switchover`, as libvirt
 * always enables) each mirror is ended with block-job-cancel, which on a ready
 * mirror completes the copy without pivoting the source onto the target; then
 * the migration continues and the destination stops its NBD server.
 */
import { qemuAuthzListObject, qemuPeerNames } from '../pki/index.js';

/** One QMP command and its arguments. */
export interface QmpCall {
  command: string;
  args: Record<string, unknown>;
}

/** Where an NBD server listens: a unix socket (tunnelled, tests) or TCP (native). */
export type NbdAddress = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: number };

/** nbd-server-start takes the legacy socket address form ({type, data}). */
export function nbdServerStart(o: { listen: NbdAddress; tlsCreds?: string; tlsAuthz?: string }): QmpCall {
  const addr =
    o.listen.type === 'unix'
      ? { type: 'unix', data: { path: o.listen.path } }
      : { type: 'inet', data: { host: o.listen.host, port: String(o.listen.port) } };
  return {
    command: 'nbd-server-start',
    args: {
      addr,
      ...(o.tlsCreds !== undefined ? { 'tls-creds': o.tlsCreds } : {}),
      ...(o.tlsAuthz !== undefined ? { 'tls-authz': o.tlsAuthz } : {}),
    },
  };
}

/**
 * An authz object admitting one host's certificate by its distinguished name
 * (`/OU=host/CN=<name>`, as QEMU's GnuTLS prints it: pki's qemuPeerNames).
 */
export function authzHostObject(id: string, commonName: string): QmpCall {
  return { command: 'object-add', args: qemuAuthzListObject(id, qemuPeerNames(commonName, 'host')) };
}

/** Exports a node of the destination QEMU, writable, under `name`. */
export function blockExportAdd(o: { id: string; nodeName: string; name: string }): QmpCall {
  return {
    command: 'block-export-add',
    args: { type: 'nbd', id: o.id, 'node-name': o.nodeName, name: o.name, writable: true },
  };
}

/** Removes an export; `hard` drops its client connections (a failed migration's source may still hold one). */
export function blockExportDel(id: string, hard: boolean): QmpCall {
  return { command: 'block-export-del', args: { id, mode: hard ? 'hard' : 'safe' } };
}

/** The source's node for one destination export (blockdev-add takes the flat socket address form). */
export function nbdTargetNode(o: {
  nodeName: string;
  server: NbdAddress;
  exportName: string;
  tlsCreds?: string | undefined;
  /** The name the destination's certificate must carry. */
  tlsHostname?: string | undefined;
}): QmpCall {
  const server =
    o.server.type === 'unix'
      ? { type: 'unix', path: o.server.path }
      : { type: 'inet', host: o.server.host, port: String(o.server.port) };
  return {
    command: 'blockdev-add',
    args: {
      driver: 'nbd',
      'node-name': o.nodeName,
      server,
      export: o.exportName,
      ...(o.tlsCreds !== undefined ? { 'tls-creds': o.tlsCreds } : {}),
      ...(o.tlsHostname !== undefined ? { 'tls-hostname': o.tlsHostname } : {}),
    },
  };
}

/**
 * Mirrors `device` into `target`. `write-blocking` (active mirroring): a guest
 * write completes only once it is on both sides, so the copy converges however
 * fast the guest writes. `top` copies only what the top image holds, for a
 * destination whose copy has the same backing image (libvirt's NON_SHARED_INC).
 */
export function blockdevMirror(o: {
  jobId: string;
  device: string;
  target: string;
  sync: 'full' | 'top';
  /** Bytes/s, 0 unlimited. */
  speed: number;
}): QmpCall {
  return {
    command: 'blockdev-mirror',
    args: {
      'job-id': o.jobId,
      device: o.device,
      target: o.target,
      sync: o.sync,
      'copy-mode': 'write-blocking',
      speed: o.speed,
      'on-source-error': 'report',
      'on-target-error': 'report',
      'auto-finalize': true,
      'auto-dismiss': true,
    },
  };
}

/**
 * Ends a mirror. Not forced, on a ready mirror: the target gets everything up
 * to now and the job ends with BLOCK_JOB_COMPLETED, the source staying on its
 * own image. Forced: it stops at once (BLOCK_JOB_CANCELLED), the target is left
 * behind half written.
 */
export function blockJobCancel(jobId: string, force: boolean): QmpCall {
  return { command: 'block-job-cancel', args: { device: jobId, force } };
}

/**
 * Cuts the connections of those of `targets` (NBD node names) that QEMU has
 * registered for yanking (query-yank's answer): their requests in flight fail
 * at once instead of waiting on a link that carries nothing any more, so a
 * force-cancelled mirror can end. Undefined when none is registered.
 */
export function yankTargets(queryYank: unknown, targets: readonly string[]): QmpCall | undefined {
  const registered = new Set(
    (Array.isArray(queryYank) ? (queryYank as Record<string, unknown>[]) : [])
      .filter((i) => i.type === 'block-node' && typeof i['node-name'] === 'string')
      .map((i) => i['node-name'] as string),
  );
  const instances = targets
    .filter((t) => registered.has(t))
    .map((t) => ({ type: 'block-node', 'node-name': t }));
  return instances.length > 0 ? { command: 'yank', args: { instances } } : undefined;
}

/** A block job as query-block-jobs reports it. */
export interface BlockJobInfo {
  id: string;
  /** Bytes the job must have copied in all (it grows while the guest writes). */
  len: number;
  offset: number;
  ready: boolean;
  status: string;
}

function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
}

/** Reads query-block-jobs. Pure. */
export function parseBlockJobs(reply: unknown): BlockJobInfo[] {
  if (!Array.isArray(reply)) return [];
  return reply.map((j) => {
    const r = asRecord(j);
    return {
      id: typeof r.device === 'string' ? r.device : '',
      len: typeof r.len === 'number' ? r.len : 0,
      offset: typeof r.offset === 'number' ? r.offset : 0,
      ready: r.ready === true,
      status: typeof r.status === 'string' ? r.status : 'unknown',
    };
  });
}

/**
 * Bytes the guest wrote that a mirror still has to copy, per node: the count of
 * the node's unnamed dirty bitmaps (a mirror's own), from query-named-block-nodes. Pure.
 */
export function dirtyBytesByNode(reply: unknown): Map<string, number> {
  const out = new Map<string, number>();
  if (!Array.isArray(reply)) return out;
  for (const n of reply) {
    const node = asRecord(n);
    const name = node['node-name'];
    const bitmaps = node['dirty-bitmaps'];
    if (typeof name !== 'string' || !Array.isArray(bitmaps)) continue;
    let count = 0;
    for (const b of bitmaps) {
      const bitmap = asRecord(b);
      if (bitmap.name === undefined && typeof bitmap.count === 'number') count += bitmap.count;
    }
    out.set(name, count);
  }
  return out;
}

/** One disk's copy at one moment: what a migration sample records per disk. */
export interface DiskSample {
  /** The disk's index in the VM spec. */
  disk: number;
  /** Bytes the mirror has copied (it copies again what the guest rewrites). */
  transferredBytes: number;
  /** Bytes it still has to copy. */
  remainingBytes: number;
  /** The mirror's whole work so far: the disk's data plus the guest's rewrites. */
  totalBytes: number;
  /** Bytes the guest wrote that are not copied yet. */
  dirtyBytes: number;
  /** Source and destination are in step: the switch-over may happen. */
  ready: boolean;
}

/** The sum over a migration's disks, for a progress line or a chart. Pure. */
export function sumDiskSamples(disks: readonly DiskSample[]): Omit<DiskSample, 'disk'> {
  return {
    transferredBytes: disks.reduce((a, d) => a + d.transferredBytes, 0),
    remainingBytes: disks.reduce((a, d) => a + d.remainingBytes, 0),
    totalBytes: disks.reduce((a, d) => a + d.totalBytes, 0),
    dirtyBytes: disks.reduce((a, d) => a + d.dirtyBytes, 0),
    ready: disks.every((d) => d.ready),
  };
}
