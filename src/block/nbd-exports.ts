import { describeError } from '../errors.js';
import type { QmpClient } from '../qemu/index.js';
import {
  authzHostObject,
  blockExportAdd,
  blockExportDel,
  nbdServerStart,
  type NbdAddress,
  type QmpCall,
} from './block-qmp.js';

/** A node of the destination QEMU to export, and the name the source asks for. */
export interface ExportedDisk {
  nodeName: string;
  exportName: string;
}

/** QEMU's own TLS on the NBD server: its tls-creds-x509 object, and the one client certificate it admits. */
export interface NbdServerTls {
  credsId: string;
  /** The source agent's certificate name; the server admits only that client (tls-authz). */
  clientCommonName: string;
  authzId: string;
}

async function run(qmp: QmpClient, call: QmpCall): Promise<void> {
  await qmp.execute(call.command, call.args);
}

/**
 * The destination half of a block migration: its QEMU's NBD server with each
 * new image exported writable (an export activates the image, which an incoming
 * QEMU otherwise keeps inactive until the migration ends). `stop` removes
 * everything again, on success before the guest starts, on failure before the
 * QEMU goes.
 */
export class NbdExports {
  private readonly exportIds: string[] = [];
  private serverStarted = false;
  private authzId: string | undefined;

  private constructor(private readonly qmp: QmpClient) {}

  /** Starts the server on `listen` and exports `disks`; undoes what it did when a step fails. */
  static async start(
    qmp: QmpClient,
    o: { listen: NbdAddress; disks: readonly ExportedDisk[]; tls?: NbdServerTls | undefined },
  ): Promise<NbdExports> {
    const exports = new NbdExports(qmp);
    try {
      if (o.tls !== undefined) {
        await run(qmp, authzHostObject(o.tls.authzId, o.tls.clientCommonName));
        exports.authzId = o.tls.authzId;
      }
      await run(
        qmp,
        nbdServerStart({
          listen: o.listen,
          ...(o.tls !== undefined ? { tlsCreds: o.tls.credsId, tlsAuthz: o.tls.authzId } : {}),
        }),
      );
      exports.serverStarted = true;
      for (const [i, disk] of o.disks.entries()) {
        const id = `vmf-export${i}`;
        await run(qmp, blockExportAdd({ id, nodeName: disk.nodeName, name: disk.exportName }));
        exports.exportIds.push(id);
      }
    } catch (err) {
      await exports.stop();
      throw err;
    }
    return exports;
  }

  /**
   * Drops every export (with any client still connected), stops the server and
   * removes the authz object. Returns what could not be undone (the QEMU may be
   * gone already); never throws.
   */
  async stop(): Promise<string[]> {
    const problems: string[] = [];
    const attempt = async (call: QmpCall): Promise<void> => {
      if (!this.qmp.connected) return;
      await run(this.qmp, call).catch((err: unknown) => problems.push(describeError(err)));
    };
    for (const id of this.exportIds.splice(0)) await attempt(blockExportDel(id, true));
    if (this.serverStarted) {
      this.serverStarted = false;
      await attempt({ command: 'nbd-server-stop', args: {} });
    }
    if (this.authzId !== undefined) {
      const id = this.authzId;
      this.authzId = undefined;
      await attempt({ command: 'object-del', args: { id } });
    }
    return problems;
  }
}
