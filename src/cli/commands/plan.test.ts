import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runMain as run } from '../_run-main.js';
import { parseCapabilities } from './plan.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vmferry-cli-plan-'));
  await writeFile(join(dir, 'unset.conf'), '[libvirt]\nvirt_type = kvm\n');
  await writeFile(
    join(dir, 'native.conf'),
    '[libvirt]\nlive_migration_tunnelled = False\nlive_migration_with_native_tls = True\n',
  );
  await writeFile(join(dir, 'bad.conf'), '[libvirt]\nlive_migration_downtime_steps = 1\n');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface PlanJson {
  transport: string;
  tls: boolean;
  channels: number;
  flags: string[];
  downtimeSteps: Array<[number, number]>;
  completionTimeoutSeconds: number;
  timeoutAction: string;
  reasons: Array<{ decision: string; option?: string; capability?: string; message: string }>;
}

describe('vmferry plan', () => {
  it('prints the JSON plan with the fields the driver needs', async () => {
    const r = await run('plan', '--config', join(dir, 'unset.conf'), '--memory-mib', '4096', '--json');
    assert.equal(r.code, 0, r.err);
    const p = JSON.parse(r.out) as PlanJson;
    for (const key of [
      'transport',
      'tls',
      'channels',
      'flags',
      'downtimeSteps',
      'completionTimeoutSeconds',
      'timeoutAction',
      'reasons',
    ]) {
      assert.ok(key in p, key);
    }
    assert.deepEqual([p.transport, p.tls], ['tunnelled', true]);
    assert.match(
      p.reasons.find((x) => x.decision === 'transport')?.message ?? '',
      /no figures for this pair of hosts .*QEMU version unknown: the default benchmarked on QEMU 7\.2: .*tunnel 4\.36 Gbit\/s vs native TLS 1\.37 Gbit\/s with a core per host/,
    );
    assert.deepEqual(p.downtimeSteps[1], [300, 95]);
    assert.equal(p.completionTimeoutSeconds, 3200);
  });

  it('falls back to the tunnel when --dest cannot do native TLS, and says why', async () => {
    const r = await run('plan', '--config', join(dir, 'unset.conf'), '--dest', 'native-tls=no', '--json');
    const p = JSON.parse(r.out) as PlanJson;
    assert.equal(p.transport, 'tunnelled');
    assert.equal(p.reasons.find((x) => x.decision === 'transport')?.capability, 'destination.nativeTls');
  });

  it('refuses native TLS a host cannot do, exit 1 with the reason and a hint', async () => {
    const r = await run('plan', '--config', join(dir, 'native.conf'), '--source', 'native-tls=no');
    assert.equal(r.code, 1);
    assert.match(r.err, /source host cannot do QEMU TLS; vmferry will not fall back to clear text/);
    assert.match(r.err, /hint:/);
  });

  it('counts disks for --block', async () => {
    const r = await run(
      'plan',
      '--config',
      join(dir, 'unset.conf'),
      '--block',
      '--memory-mib',
      '2048',
      '--disk-gib',
      '20',
      '--json',
    );
    const p = JSON.parse(r.out) as PlanJson & { dataGiB: number };
    assert.equal(p.dataGiB, 22);
    assert.ok(p.flags.includes('VIR_MIGRATE_NON_SHARED_INC'));
  });

  it('prints readable text without --json', async () => {
    const r = await run('plan', '--config', join(dir, 'unset.conf'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /transport {7}tunnelled \(TLS between the agents\)/);
    assert.match(r.out, /why:\n {2}transport: tunnelled: libvirt.live_migration_tunnelled = unset/);
  });

  it('refuses a configuration with errors', async () => {
    const r = await run('plan', '--config', join(dir, 'bad.conf'));
    assert.equal(r.code, 1);
    assert.match(r.err, /error\(s\) in the configuration/);
  });

  it('rejects bad arguments, naming each', async () => {
    for (const [args, message] of [
      [
        ['--source', 'warp=yes'],
        'unknown capability "warp"; known: native-tls, multifd, postcopy, auto-converge, cpus',
      ],
      [['--memory-mib', '-5'], '--memory-mib must be a number > 0, got "-5"'],
      [
        ['--disk-gib', '5'],
        '--disk-gib counts only for --block: a live migration on shared storage copies no disk',
      ],
    ] as const) {
      const r = await run('plan', '--config', join(dir, 'unset.conf'), ...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.equal(r.err, `vmferry: error: ${message}\n`);
    }
  });
});

describe('parseCapabilities', () => {
  it('reads key=yes|no lists; unnamed keys stay available', () => {
    assert.deepEqual(parseCapabilities('native-tls=no, multifd=yes,auto-converge=off'), {
      nativeTls: false,
      multifd: true,
      postcopy: true,
      autoConverge: false,
    });
    assert.throws(() => parseCapabilities('multifd=maybe'), /use yes or no/);
  });
});
