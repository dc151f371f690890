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
  let pos = 0;
  const lineAt = (at: number): number => {
    let line = 1;
    for (let i = 0; i < at && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
    return line;
  };
  const fail = (message: string, at = pos): never => {
    throw new ConfigError(message, { file, line: lineAt(at) });
  };
  const decode = (raw: string, at: number): string =>
    raw.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);|&/g, (whole, ref: string | undefined) => {
      if (ref === undefined) return fail('a bare & (write &amp;)', at);
      if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
      if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
      return ENTITIES[ref] ?? fail(`unknown entity ${whole}`, at);
    });
  const skip = (end: string, what: string): void => {
    const at = text.indexOf(end, pos);
    if (at < 0) fail(`${what} never ends`);
    pos = at + end.length;
  };
  /** Comments, processing instructions and blanks between elements. */
  const skipMisc = (): void => {
    for (;;) {
      while (pos < text.length && /\s/.test(text[pos] ?? '')) pos++;
      if (text.startsWith('<!--', pos)) skip('-->', 'a comment');
      else if (text.startsWith('<?', pos)) skip('?>', 'a processing instruction');
      else if (text.startsWith('<!DOCTYPE', pos)) fail('a DOCTYPE is not accepted (libvirt writes none)');
      else return;
    }
  };
  const name = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(text);
    if (m === null) return fail('a name was expected');
    pos += m[0].length;
    return m[0];
  };
  const element = (): XmlElement => {
    const start = pos;
    if (text[pos] !== '<') fail('an element was expected');
    pos++;
    const el: XmlElement = { name: name(), attrs: {}, children: [], text: '', line: lineAt(start) };
    for (;;) {
      const before = pos;
      while (/\s/.test(text[pos] ?? '')) pos++;
      if (text.startsWith('/>', pos)) {
        pos += 2;
        return el;
      }
      if (text[pos] === '>') {
        pos++;
        break;
      }
      if (pos === before) fail(`<${el.name}>: a blank, > or /> was expected`);
      const attr = name();
      while (/\s/.test(text[pos] ?? '')) pos++;
      if (text[pos] !== '=') fail(`<${el.name}>: attribute ${attr} has no value`);
      pos++;
      while (/\s/.test(text[pos] ?? '')) pos++;
      const quote = text[pos];
      if (quote !== '"' && quote !== "'") return fail(`<${el.name}>: the value of ${attr} must be quoted`);
      const end = text.indexOf(quote, pos + 1);
      if (end < 0) fail(`<${el.name}>: the value of ${attr} never ends`);
      if (attr in el.attrs) fail(`<${el.name}>: attribute ${attr} given twice`);
      el.attrs[attr] = decode(text.slice(pos + 1, end), pos);
      pos = end + 1;
    }
    let own = '';
    for (;;) {
      if (pos >= text.length) fail(`<${el.name}> (line ${el.line}) is never closed`);
      if (text.startsWith('</', pos)) {
        pos += 2;
        const closing = name();
        if (closing !== el.name) fail(`</${closing}> closes <${el.name}> (line ${el.line})`);
        while (/\s/.test(text[pos] ?? '')) pos++;
        if (text[pos] !== '>') fail(`</${closing}>: > was expected`);
        pos++;
        el.text = own.trim();
        return el;
      }
      if (text.startsWith('<![CDATA[', pos)) {
        const end = text.indexOf(']]>', pos);
        if (end < 0) fail('a CDATA section never ends');
        own += text.slice(pos + 9, end);
        pos = end + 3;
      } else if (text.startsWith('<!--', pos)) skip('-->', 'a comment');
      else if (text.startsWith('<?', pos)) skip('?>', 'a processing instruction');
      else if (text[pos] === '<') el.children.push(element());
      else {
        const next = text.indexOf('<', pos);
        const end = next < 0 ? text.length : next;
        own += decode(text.slice(pos, end), pos);
        pos = end;
      }
    }
  };
  if (text.charCodeAt(0) === 0xfeff) pos = 1;
  skipMisc();
  if (pos >= text.length) fail('the document is empty');
  const root = element();
  skipMisc();
  if (pos < text.length) fail('something follows the root element');
  return root;
}

/** The first child named `name`. */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.children.find((c) => c.name === name);
}

/** Every child named `name`. */
export function childrenNamed(el: XmlElement | undefined, name: string): XmlElement[] {
  return el?.children.filter((c) => c.name === name) ?? [];
}
