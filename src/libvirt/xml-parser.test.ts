import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import { child, childrenNamed, parseXml } from './xml-parser.js';

describe('the XML libvirt writes', () => {
  it('reads elements, both quote styles, entities, character references, CDATA and comments', () => {
    const root = parseXml(
      `<?xml version="1.0"?>\n<!-- dumped -->\n<domain type='kvm' id="7">\n  <name>a &amp; b&#x21;&#33;</name>\n  <cmd><![CDATA[x < y]]></cmd>\n  <devices><disk device='disk'/><!-- x --><disk device="cdrom" /></devices>\n</domain>\n`,
    );
    assert.equal(root.name, 'domain');
    assert.deepEqual(root.attrs, { type: 'kvm', id: '7' });
    assert.equal(child(root, 'name')?.text, 'a & b!!');
    assert.equal(child(root, 'cmd')?.text, 'x < y');
    assert.deepEqual(
      childrenNamed(child(root, 'devices'), 'disk').map((d) => [d.attrs.device, d.line]),
      [
        ['disk', 6],
        ['cdrom', 6],
      ],
    );
    assert.equal(parseXml('<a><nova:x xmlns:nova="u">1</nova:x></a>').children[0]?.name, 'nova:x');
  });

  it('refuses broken XML and DTDs, naming file and line', () => {
    const refused = (xml: string, message: RegExp): void =>
      assert.throws(
        () => parseXml(xml, 'dom.xml'),
        (err: unknown) =>
          err instanceof ConfigError && err.code === 'VMF_ERR_CONFIG' && message.test(err.message),
      );
    refused('<domain>\n<name>x</nam>\n</domain>', /^dom\.xml:2: <\/nam> closes <name> \(line 2\)/);
    refused('<domain>\n<name>x', /^dom\.xml:2: <name> \(line 2\) is never closed/);
    refused('<!DOCTYPE d [<!ENTITY e "x">]><d>&e;</d>', /^dom\.xml:1: a DOCTYPE is not accepted/);
    refused('<d>&e;</d>', /unknown entity &e;/);
    refused("<d a='1' a='2'/>", /attribute a given twice/);
    refused('<d a=1/>', /the value of a must be quoted/);
    refused('<d/><e/>', /something follows the root element/);
    refused('   ', /the document is empty/);
  });
});
