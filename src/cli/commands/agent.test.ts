import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkConfig, optionsFrom } from '../../config/index.js';
import { UsageError } from '../../errors.js';
import { agentSettings, parseListen } from './agent.js';

describe('agent settings', () => {
  it('reads [vmferry] and [libvirt] from the config file', () => {
    const check = checkConfig(
      '[vmferry]\nagent_name = cmp-07\nlisten = 198.18.0.7:7711\nstate_dir = /srv/vmf\ntls_dir = /etc/vmferry/id\naccel = tcg\nworkers = 3\npeers = https://198.18.0.8:7700, https://198.18.0.9:7700\n' +
        'image_dirs = /srv/images, /srv/kernels\ndisk_dirs = /srv/disks\n' +
        '[libvirt]\nlive_migration_inbound_addr = 198.18.1.7\n',
      '/etc/nova/nova.conf',
    );
    assert.ok(check.options !== null && check.ok, check.errors.map((e) => e.message).join('; '));
    const s = agentSettings({ qemu: 'q', qemuTls: true }, check.options);
    assert.deepEqual(s, {
      name: 'cmp-07',
      host: '198.18.0.7',
      port: 7711,
      stateDir: '/srv/vmf',
      instancesPath: '/srv/vmf/instances',
      tlsDir: '/etc/vmferry/id',
      migrationAddress: '198.18.1.7',
      accel: 'tcg',
      peers: ['https://198.18.0.8:7700', 'https://198.18.0.9:7700'],
      workers: 3,
      vmFileDirs: { imageDirs: ['/srv/images', '/srv/kernels'], diskDirs: ['/srv/disks'] },
      testMode: false,
    });
  });

  it('lets flags override the file', () => {
    const options = optionsFrom({ 'vmferry.tls_dir': '/etc/a', 'vmferry.listen': '10.0.0.1:1' });
    const s = agentSettings(
      {
        qemu: 'q',
        qemuTls: true,
        tlsDir: '/etc/b',
        listen: '[::1]:7700',
        accel: 'kvm',
        imageDir: ['/lab/guest'],
        testMode: true,
      },
      options,
    );
    assert.deepEqual(s.vmFileDirs, { imageDirs: ['/lab/guest'], diskDirs: ['/var/lib/vmferry/disks'] });
    assert.equal(s.testMode, true);
    assert.equal(s.tlsDir, '/etc/b');
    assert.equal(s.host, '::1');
    assert.equal(s.port, 7700);
    assert.equal(s.accel, 'kvm');
    assert.deepEqual(s.peers, [], 'no peers unless configured');
    assert.equal(s.workers, undefined, '0 = the default, one per 2 CPUs');
  });

  it("keeps local disks in [vmferry] instances_path, else nova's [DEFAULT] instances_path, else STATE_DIR/instances", () => {
    const nova = { 'vmferry.tls_dir': '/t', 'DEFAULT.instances_path': '/var/lib/nova/instances' } as const;
    const flags = { qemu: 'q', qemuTls: true };
    assert.equal(agentSettings(flags, optionsFrom(nova)).instancesPath, '/var/lib/nova/instances');
    assert.equal(
      agentSettings(flags, optionsFrom({ ...nova, 'vmferry.instances_path': '/srv/disks' })).instancesPath,
      '/srv/disks',
    );
    assert.equal(agentSettings({ ...flags, instancesPath: '/x' }, optionsFrom(nova)).instancesPath, '/x');
    assert.equal(
      agentSettings({ ...flags, stateDir: '/s' }, optionsFrom({ 'vmferry.tls_dir': '/t' })).instancesPath,
      '/s/instances',
    );
  });

  it('names what is missing or wrong', () => {
    assert.throws(
      () => agentSettings({ qemu: 'q', qemuTls: true }, optionsFrom({})),
      (e: unknown) => e instanceof UsageError && /--tls-dir/.test(e.message),
    );
    assert.throws(
      () => agentSettings({ qemu: 'q', qemuTls: true, tlsDir: '/x', accel: 'hvf' }, optionsFrom({})),
      /--accel must be auto, kvm or tcg, got "hvf"/,
    );
    assert.throws(() => parseListen('198.18.0.1'), /"198\.18\.0\.1" is not HOST:PORT/);
    assert.throws(() => parseListen('h:99999'), /not HOST:PORT/);
  });
});
