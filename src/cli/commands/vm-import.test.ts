import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { NOVA_KERNEL_BOOT_XML } from '../../libvirt/nova-domains.fixture.js';
import { runMain as run } from '../_run-main.js';
import { specFromFlags } from './vm-spec-flags.js';

const dir = mkdtempSync(join(tmpdir(), 'vmf-import-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const xml = join(dir, 'instance-0000002a.xml');
writeFileSync(xml, NOVA_KERNEL_BOOT_XML);

describe('vmferry vm import', () => {
  it('prints the spec on stdout and what it leaves out on stderr, and the spec starts as it is', async () => {
    const r = await run('vm', 'import', xml, '--name', 'web-1');
    assert.equal(r.code, 0, r.err);
    const spec = JSON.parse(r.out) as { name: string; nics: unknown[] };
    assert.equal(spec.name, 'web-1');
    assert.match(r.err, /^not carried over \(15\):\n {2}os smbios mode='sysinfo': /);
    assert.match(r.err, /graphics type='vnc': vmferry VMs have no display/);
    assert.match(r.err, /assumed:\n {2}disks\[0\] .*: marked storage "shared"/);
    const specFile = join(dir, 'web-1.json');
    writeFileSync(specFile, r.out);
    assert.deepEqual(specFromFlags('web-1', { spec: specFile }).nics, spec.nics);
  });

  it('writes the spec with --out and reports as JSON with --json', async () => {
    const out = join(dir, 'out.json');
    const r = await run('vm', 'import', xml, '--out', out, '--json');
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out) as {
      name: string;
      spec: unknown;
      notCarriedOver: { element: string; reason: string }[];
      assumptions: string[];
    };
    assert.equal(report.name, 'instance-0000002a');
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), report.spec);
    assert.equal(report.notCarriedOver.length, 15);
  });

  it('names the file and line of XML it cannot read', async () => {
    const broken = join(dir, 'broken.xml');
    writeFileSync(broken, '<domain>\n  <name>x</name>\n  <memory>1</memory>\n');
    const r = await run('vm', 'import', broken);
    assert.equal(r.code, 1);
    assert.match(r.err, /vmferry: error: .*broken\.xml:4: <domain> \(line 1\) is never closed/);
  });
});
