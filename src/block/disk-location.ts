import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';

/** True when `path` is `folder` itself or inside it (both absolute). */
export function isInside(folder: string, path: string): boolean {
  const rel = relative(normalize(folder), normalize(path));
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Where the destination finds the backing image of a copied top layer, and how
 * the new top names it. The source's top names its backing image either
 * relative to its own folder (kept: the destination looks beside its copy), or
 * by an absolute path inside the source's instances_path (the same place under
 * the destination's), or by any other absolute path (the same path there: an
 * image folder every host has).
 */
export function destinationBacking(o: {
  /** The backing image as the source's top layer names it. */
  name: string;
  sourceInstancesPath: string;
  destinationInstancesPath: string;
  /** The destination's copy of the top layer. */
  destinationTop: string;
}): { path: string; name: string } {
  if (!isAbsolute(o.name)) return { path: resolve(dirname(o.destinationTop), o.name), name: o.name };
  const source = resolve(o.sourceInstancesPath);
  if (isInside(source, o.name)) {
    const path = join(resolve(o.destinationInstancesPath), relative(source, o.name));
    return { path, name: path };
  }
  return { path: o.name, name: o.name };
}
