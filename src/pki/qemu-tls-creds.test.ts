import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { initCa } from './ca.js';
import { type TlsIdentity, loadTlsIdentity } from './identity.js';
import { issueCertificate } from './issue.js';
import {
  QEMU_TLS_FILES,
  qemuTlsCredsArg,
  qemuTlsCredsObject,
  writeQemuTlsCredsDir,
} from './qemu-tls-creds.js';

describe('pki QEMU tls-creds-x509 directory', () => {
  let root: string;
  let identity: TlsIdentity;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vmferry-qemu-creds-test-'));
    await initCa(join(root, 'ca'));
    identity = await loadTlsIdentity(
      (await issueCertificate(join(root, 'ca'), { name: 'host-a', role: 'host' })).dir,
    );
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes the five files QEMU looks for, keys 0600 in a 0700 directory', async () => {
    const creds = await writeQemuTlsCredsDir(join(root, 'vm1', 'tls'), identity);
    assert.equal(creds.dir, join(root, 'vm1', 'tls'));
    assert.deepEqual((await readdir(creds.dir)).sort(), [
      'ca-cert.pem',
      'client-cert.pem',
      'client-key.pem',
      'server-cert.pem',
      'server-key.pem',
    ]);
    assert.equal((await stat(creds.dir)).mode & 0o777, 0o700);
    for (const key of [creds.files.serverKey, creds.files.clientKey]) {
      assert.equal((await stat(key)).mode & 0o777, 0o600, key);
      assert.deepEqual(await readFile(key), identity.key);
    }
    assert.deepEqual(await readFile(creds.files.caCert), identity.ca);
    assert.deepEqual(await readFile(creds.files.serverCert), identity.cert);
    assert.deepEqual(await readFile(creds.files.clientCert), identity.cert);
    assert.equal(creds.files.caCert, join(creds.dir, QEMU_TLS_FILES.caCert));
  });

  it('rewrites an existing directory in place', async () => {
    const other = await loadTlsIdentity(
      (await issueCertificate(join(root, 'ca'), { name: 'host-b', role: 'host' })).dir,
    );
    const creds = await writeQemuTlsCredsDir(join(root, 'vm1', 'tls'), other);
    assert.deepEqual(await readFile(creds.files.serverCert), other.cert);
    assert.equal((await readdir(creds.dir)).length, 5);
  });

  it('describes the QEMU object for QMP and for the command line', () => {
    assert.deepEqual(qemuTlsCredsObject('tls0', '/run/vmferry/vm1/tls', 'server'), {
      'qom-type': 'tls-creds-x509',
      id: 'tls0',
      dir: '/run/vmferry/vm1/tls',
      endpoint: 'server',
      'verify-peer': true,
    });
    assert.equal(
      qemuTlsCredsArg('tls0', '/run/a,b/tls', 'client'),
      'tls-creds-x509,id=tls0,dir=/run/a,,b/tls,endpoint=client,verify-peer=on',
    );
  });
});
