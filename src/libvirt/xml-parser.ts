import { ConfigError } from '../errors.js';

/** An element of an XML document: what libvirt's domain XML is made of. */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** The element's own text (not its children's), entities decoded, trimmed. */
  text: string;
  line: number;
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const NAME = /[A-Za-z_][\w.:-]*/y;

/**
 * Parses the XML libvirt writes (`virsh dumpxml`): elements, attributes,
 * text, comments, CDATA, the five entities and character references. No
 * DTD: a document declaring one is refused, so no entity is ever expanded
 * from it. Errors name the file and line.
 */
export function parseXml(text: string, file = 'the XML'): XmlElement {
  const reader = new XmlReader(text, file);
  if (text.charCodeAt(0) === 0xfeff) reader.pos = 1;
  reader.skipMisc();
  if (reader.pos >= text.length) reader.fail('the document is empty');
  const root = reader.element();
  reader.skipMisc();
  if (reader.pos < text.length) reader.fail('something follows the root element');
  return root;
}

/** A recursive-descent reader over one document, at `pos`. */
class XmlReader {
  pos = 0;

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  fail(message: string, at = this.pos): never {
    throw new ConfigError(message, { file: this.file, line: this.lineAt(at) });
  }

  /** Comments, processing instructions and blanks between elements. */
  skipMisc(): void {
    for (;;) {
      this.skipBlanks();
      if (this.text.startsWith('<!--', this.pos)) this.skip('-->', 'a comment');
      else if (this.text.startsWith('<?', this.pos)) this.skip('?>', 'a processing instruction');
      else if (this.text.startsWith('<!DOCTYPE', this.pos))
        this.fail('a DOCTYPE is not accepted (libvirt writes none)');
      else return;
    }
  }

  element(): XmlElement {
    const start = this.pos;
    if (this.text[this.pos] !== '<') this.fail('an element was expected');
    this.pos++;
    const el: XmlElement = { name: this.name(), attrs: {}, children: [], text: '', line: this.lineAt(start) };
    if (this.attributes(el) === 'empty') return el;
    this.content(el);
    return el;
  }

  /** The attributes of `el`, up to `>` (content follows) or `/>` (an empty element). */
  private attributes(el: XmlElement): 'empty' | 'content' {
    const { text } = this;
    for (;;) {
      const before = this.pos;
      this.skipBlanks();
      if (text.startsWith('/>', this.pos)) {
        this.pos += 2;
        return 'empty';
      }
      if (text[this.pos] === '>') {
        this.pos++;
        return 'content';
      }
      if (this.pos === before) this.fail(`<${el.name}>: a blank, > or /> was expected`);
      const attr = this.name();
      this.skipBlanks();
      if (text[this.pos] !== '=') this.fail(`<${el.name}>: attribute ${attr} has no value`);
      this.pos++;
      this.skipBlanks();
      const quote = text[this.pos];
      if (quote !== '"' && quote !== "'") this.fail(`<${el.name}>: the value of ${attr} must be quoted`);
      const end = text.indexOf(quote, this.pos + 1);
      if (end < 0) this.fail(`<${el.name}>: the value of ${attr} never ends`);
      if (attr in el.attrs) this.fail(`<${el.name}>: attribute ${attr} given twice`);
      el.attrs[attr] = this.decode(text.slice(this.pos + 1, end), this.pos);
      this.pos = end + 1;
    }
  }

  /** Text, CDATA, comments and child elements up to `el`'s closing tag. */
  private content(el: XmlElement): void {
    const { text } = this;
    let own = '';
    for (;;) {
      if (this.pos >= text.length) this.fail(`<${el.name}> (line ${el.line}) is never closed`);
      if (text.startsWith('</', this.pos)) {
        this.close(el);
        el.text = own.trim();
        return;
      }
      if (text.startsWith('<![CDATA[', this.pos)) {
        const end = text.indexOf(']]>', this.pos);
        if (end < 0) this.fail('a CDATA section never ends');
        own += text.slice(this.pos + 9, end);
        this.pos = end + 3;
      } else if (text.startsWith('<!--', this.pos)) this.skip('-->', 'a comment');
      else if (text.startsWith('<?', this.pos)) this.skip('?>', 'a processing instruction');
      else if (text[this.pos] === '<') el.children.push(this.element());
      else {
        const next = text.indexOf('<', this.pos);
        const end = next < 0 ? text.length : next;
        own += this.decode(text.slice(this.pos, end), this.pos);
        this.pos = end;
      }
    }
  }

  /** The closing tag of `el`, at `</`. */
  private close(el: XmlElement): void {
    this.pos += 2;
    const closing = this.name();
    if (closing !== el.name) this.fail(`</${closing}> closes <${el.name}> (line ${el.line})`);
    this.skipBlanks();
    if (this.text[this.pos] !== '>') this.fail(`</${closing}>: > was expected`);
    this.pos++;
  }

  private name(): string {
    NAME.lastIndex = this.pos;
    const m = NAME.exec(this.text);
    if (m === null) return this.fail('a name was expected');
    this.pos += m[0].length;
    return m[0];
  }

  private skip(end: string, what: string): void {
    const at = this.text.indexOf(end, this.pos);
    if (at < 0) this.fail(`${what} never ends`);
    this.pos = at + end.length;
  }

  private skipBlanks(): void {
    while (/\s/.test(this.text[this.pos] ?? '')) this.pos++;
  }

  private decode(raw: string, at: number): string {
    return raw.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);|&/g, (whole, ref: string | undefined) => {
      if (ref === undefined) return this.fail('a bare & (write &amp;)', at);
      if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
      if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
      return ENTITIES[ref] ?? this.fail(`unknown entity ${whole}`, at);
    });
  }

  private lineAt(at: number): number {
    let line = 1;
    for (let i = 0; i < at && i < this.text.length; i++) if (this.text.charCodeAt(i) === 10) line++;
    return line;
  }
}

/** The first child named `name`. */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

/** Every child named `name`. */
export function childrenNamed(el: XmlElement | undefined, name: string): XmlElement[] {
  return el?.children.filter((c) => c.name === name) ?? [];
}
