export { parseXml, child, childrenNamed, type XmlElement } from './xml-parser.js';
export {
  importLibvirtDomain,
  libvirtBytes,
  type LibvirtImport,
  type NotCarriedOver,
} from './import-domain.js';
