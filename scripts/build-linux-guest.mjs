#!/usr/bin/env node
// Builds the Linux test guest (guest/linux/) into guest/build/linux/: Debian's
// cloud kernel and busybox-static fetched with `apt-get download` (never
// installed), the virtio modules, the workload (static C), a gzipped newc
// initramfs and a FAT disk image that SeaBIOS boots through syslinux.
// Only Node built-ins: scripts/setup.mjs calls it before node_modules exists.
// A second run with the same inputs only compares a hash.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const self = fileURLToPath(import.meta.url);

/** Load order: each module after the ones it needs (modules.dep of Debian's 6.1 cloud kernel). */
export const MODULES = [
  'drivers/virtio/virtio_ring.ko',
  'drivers/virtio/virtio.ko',
  'drivers/virtio/virtio_pci_modern_dev.ko',
  'drivers/virtio/virtio_pci_legacy_dev.ko',
  'drivers/virtio/virtio_pci.ko',
  'drivers/block/virtio_blk.ko',
  'net/core/failover.ko',
  'drivers/net/net_failover.ko',
  'drivers/net/virtio_net.ko',
];

/** The kernel command line the boot disk carries until linuxGuestBootDisk() rewrites it. */
export const DEFAULT_BOOT_APPEND = 'console=ttyS0 panic=-1 quiet vmf.mem=64 vmf.disk=/dev/vdb';
/** Bytes after `APPEND ` in syslinux.cfg that linuxGuestBootDisk() may rewrite. */
export const BOOT_APPEND_ROOM = 1024;

const KERNEL_META = 'linux-image-cloud-amd64';
const BUSYBOX = 'busybox-static';

export class LinuxGuestBuildError extends Error {
  constructor(message, hint) {
    super(message);
    this.hint = hint;
  }
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** A command's path: on PATH, or in the sbin folders a non-root PATH leaves out (mkfs.fat). */
export function findTool(name) {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/sbin'];
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p));
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) return { ok: false, stdout: '', stderr: '', why: r.error.message };
  const stderr = String(r.stderr ?? '').trim();
  return {
    ok: r.status === 0,
    stdout: r.stdout ?? '',
    stderr,
    why: `exit status ${r.status}${stderr ? `: ${stderr.split('\n').slice(-3).join(' / ')}` : ''}`,
  };
}

function must(cmd, args, what, hint, opts = {}) {
  const r = run(cmd, args, opts);
  if (!r.ok) throw new LinuxGuestBuildError(`${what} failed (${cmd} ${args.join(' ')}: ${r.why})`, hint);
  return r.stdout;
}

const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

function aptUpdate(why) {
  const cmd = 'apt-get update';
  if (!isRoot())
    throw new LinuxGuestBuildError(
      why,
      `as root, run: ${cmd} (it also shows whether this host reaches its Debian mirror); then run node scripts/setup.mjs again`,
    );
  const r = run('apt-get', ['update', '-qq'], { env: aptEnv });
  if (!r.ok)
    throw new LinuxGuestBuildError(
      `${why}; apt-get update failed too (${r.why})`,
      `check that this host reaches its Debian mirror (/etc/apt/sources.list*), then run: ${cmd} && node scripts/setup.mjs`,
    );
}

/** linux-image-cloud-amd64 -> the versioned package it depends on (linux-image-6.1.0-NN-cloud-amd64). */
function resolveKernelPackage() {
  const look = () => {
    const r = run('apt-cache', ['depends', KERNEL_META]);
    return /Depends:\s+(linux-image-[0-9][^\s]*-cloud-amd64)\b/.exec(r.stdout)?.[1];
  };
  let pkg = look();
  if (pkg === undefined) {
    aptUpdate(`apt-cache does not know ${KERNEL_META} (no package lists?)`);
    pkg = look();
  }
  if (pkg === undefined)
    throw new LinuxGuestBuildError(
      `apt-cache depends ${KERNEL_META} names no linux-image-*-cloud-amd64 package`,
      'check that /etc/apt/sources.list(.d) has Debian main for amd64, then run apt-get update',
    );
  return pkg;
}

function download(cache, packages) {
  const tmp = mkdtempSync(join(cache, '.download-'));
  try {
    // As root apt drops to _apt, which cannot write here; the download is plain files.
    const args = [...(isRoot() ? ['-o', 'APT::Sandbox::User=root'] : []), 'download', ...packages];
    let r = run('apt-get', args, { cwd: tmp, env: aptEnv });
    if (!r.ok) {
      aptUpdate(`apt-get download ${packages.join(' ')} failed (${r.why})`);
      r = run('apt-get', args, { cwd: tmp, env: aptEnv });
    }
    if (!r.ok)
      throw new LinuxGuestBuildError(
        `apt-get download ${packages.join(' ')} failed (${r.why})`,
        `check that deb.debian.org (or this host's Debian mirror) is reachable, or put the .deb files there by hand: cd ${relative(process.cwd(), cache) || '.'} && apt-get download ${packages.join(' ')}`,
      );
    for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(cache, f));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function findDeb(cache, re) {
  const hits = existsSync(cache) ? readdirSync(cache).filter((f) => re.test(f)) : [];
  return hits.sort().at(-1);
}

/** The two .deb files, from the cache or downloaded into it. */
function debs(cache) {
  mkdirSync(cache, { recursive: true });
  const kernelRe = /^linux-image-[0-9].*-cloud-amd64_.*_amd64\.deb$/;
  const busyboxRe = /^busybox-static_.*_amd64\.deb$/;
  const want = [];
  if (findDeb(cache, kernelRe) === undefined) want.push(resolveKernelPackage());
  if (findDeb(cache, busyboxRe) === undefined) want.push(BUSYBOX);
  if (want.length > 0) download(cache, want);
  const kernel = findDeb(cache, kernelRe);
  const busybox = findDeb(cache, busyboxRe);
  if (kernel === undefined || busybox === undefined)
    throw new LinuxGuestBuildError(
      `apt-get download left no ${kernel === undefined ? 'kernel' : 'busybox-static'} package in ${cache}`,
    );
  return { kernel: join(cache, kernel), busybox: join(cache, busybox) };
}

function hashInputs(files, extra) {
  const h = createHash('sha256');
  for (const f of files)
    h.update(`${relative(root, f)}\0`)
      .update(readFileSync(f))
      .update('\0');
  h.update(extra);
  return h.digest('hex');
}

// ---- newc cpio ----------------------------------------------------------

function cpioHeader(ino, mode, size, nameLen, rdevMajor = 0, rdevMinor = 0) {
  const fields = [ino, mode, 0, 0, 1, 0, size, 0, 0, rdevMajor, rdevMinor, nameLen, 0];
  return '070701' + fields.map((n) => n.toString(16).padStart(8, '0')).join('');
}

function pad4(n) {
  return (4 - (n % 4)) % 4;
}

/** entries: {path, type: 'dir'|'file'|'char'|'link', mode, data?, target?, major?, minor?} */
export function newcArchive(entries) {
  const parts = [];
  let ino = 1;
  const push = (header, name, data) => {
    const head = Buffer.from(header + name + '\0', 'latin1');
    parts.push(head, Buffer.alloc(pad4(head.length)));
    if (data.length > 0) parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) {
    const type = { dir: 0o040000, file: 0o100000, char: 0o020000, link: 0o120000 }[e.type];
    const data =
      e.type === 'file' ? e.data : e.type === 'link' ? Buffer.from(e.target, 'latin1') : Buffer.alloc(0);
    const name = e.path.replace(/^\/+/, '');
    push(
      cpioHeader(ino++, type | e.mode, data.length, name.length + 1, e.major ?? 0, e.minor ?? 0),
      name,
      data,
    );
  }
  push(cpioHeader(0, 0, 0, 'TRAILER!!!'.length + 1), 'TRAILER!!!', Buffer.alloc(0));
  return Buffer.concat(parts);
}

// ---- the build ----------------------------------------------------------

function moduleBytes(extracted, rel, busybox) {
  const modRoot = join(extracted, 'lib', 'modules');
  const releases = readdirSync(modRoot);
  if (releases.length !== 1)
    throw new LinuxGuestBuildError(`expected one kernel release in ${modRoot}, found ${releases.join(', ')}`);
  const base = join(modRoot, releases[0], 'kernel', rel);
  if (existsSync(base)) return readFileSync(base);
  if (existsSync(`${base}.xz`)) {
    // busybox's own xz: no xz-utils needed on the host. The guest's insmod wants plain .ko.
    return Buffer.from(
      must(busybox, ['xz', '-dc', `${base}.xz`], `unpacking ${rel}.xz`, undefined, { encoding: 'buffer' }),
    );
  }
  if (existsSync(`${base}.gz`)) return gunzipSync(readFileSync(`${base}.gz`));
  if (existsSync(`${base}.zst`)) {
    return Buffer.from(
      must('zstd', ['-dc', `${base}.zst`], `unpacking ${rel}.zst`, 'apt-get install zstd', {
        encoding: 'buffer',
      }),
    );
  }
  throw new LinuxGuestBuildError(`the kernel package has no module ${rel} (nor .xz/.gz/.zst) under ${base}`);
}

function buildWorkload(outFile) {
  const src = join(root, 'guest', 'linux', 'workload.c');
  must(
    'gcc',
    [
      '-static',
      '-O2',
      '-std=gnu11',
      '-Wall',
      '-Wextra',
      '-Werror',
      '-s',
      '-I',
      join(root, 'guest', 'src'),
      '-o',
      outFile,
      src,
      join(root, 'guest', 'src', 'pattern.c'),
    ],
    'compiling the Linux guest workload',
    'a compile error points into guest/linux/workload.c; a link error means libc6-dev is missing (apt-get install libc6-dev)',
  );
}

/**
 * The APPEND line's arguments, then a comment line that fills the rest of the
 * room: linuxGuestBootDisk() rewrites these bytes in place, same length.
 */
export function bootAppendRegion(append) {
  const region = `${append}\n#`;
  if (/[\n\r]/.test(append) || region.length > BOOT_APPEND_ROOM)
    throw new LinuxGuestBuildError(
      `the boot disk's APPEND must be one line of at most ${BOOT_APPEND_ROOM - 2} characters`,
    );
  return region.padEnd(BOOT_APPEND_ROOM, ' ');
}

function syslinuxCfg(append) {
  return [
    'SERIAL 0 115200',
    'DEFAULT vmferry',
    'PROMPT 0',
    'TIMEOUT 0',
    'LABEL vmferry',
    '  LINUX /vmlinuz',
    '  INITRD /initrd.img',
    `  APPEND ${bootAppendRegion(append)}`,
    '',
  ].join('\n');
}

function buildBootDisk(out, kernel, initrd) {
  const tmp = join(out, 'boot.img.tmp');
  rmSync(tmp, { force: true });
  const payload = statSync(kernel).size + statSync(initrd).size;
  const mib = Math.ceil(payload / (1 << 20)) + 4;
  const hint = 'apt-get install syslinux mtools dosfstools (node scripts/setup.mjs does it as root)';
  must(
    findTool('mkfs.fat') ?? 'mkfs.fat',
    ['-C', '-n', 'VMFERRY', '-i', '766d6672', tmp, String(mib * 1024)],
    'making the FAT boot disk',
    hint,
  );
  const cfg = join(out, 'syslinux.cfg');
  writeFileSync(cfg, syslinuxCfg(DEFAULT_BOOT_APPEND));
  must('mcopy', ['-i', tmp, kernel, '::vmlinuz'], 'copying the kernel onto the boot disk', hint);
  must('mcopy', ['-i', tmp, initrd, '::initrd.img'], 'copying the initramfs onto the boot disk', hint);
  must('mcopy', ['-i', tmp, cfg, '::syslinux.cfg'], 'copying syslinux.cfg onto the boot disk', hint);
  must('syslinux', ['--install', tmp], 'installing syslinux on the boot disk', hint);
  // linuxGuestBootDisk() rewrites the APPEND line in place: find it once here.
  const image = readFileSync(tmp);
  const marker = Buffer.from(`APPEND ${bootAppendRegion(DEFAULT_BOOT_APPEND)}`, 'latin1');
  const at = image.indexOf(marker);
  if (at < 0 || image.indexOf(marker, at + 1) >= 0)
    throw new LinuxGuestBuildError('cannot find the one APPEND line of syslinux.cfg in the boot disk image');
  renameSync(tmp, join(out, 'boot.img'));
  return { appendOffset: at + 'APPEND '.length, appendRoom: BOOT_APPEND_ROOM, sizeBytes: image.length };
}

/**
 * Builds guest/build/linux/{vmlinuz,initrd.img,boot.img,manifest.json} unless
 * the stamp says they are up to date. Throws LinuxGuestBuildError (message, hint).
 */
export function buildLinuxGuest({ say = () => {}, force = false } = {}) {
  const out = join(root, 'guest', 'build', 'linux');
  const cache = join(out, 'cache');
  const { kernel: kernelDeb, busybox: busyboxDeb } = debs(cache);
  const sources = [
    self,
    join(root, 'guest', 'linux', 'init'),
    join(root, 'guest', 'linux', 'workload.c'),
    join(root, 'guest', 'src', 'pattern.c'),
    join(root, 'guest', 'src', 'pattern.h'),
    join(root, 'guest', 'src', 'layout.h'),
  ];
  const stampFile = join(out, 'stamp');
  const outputs = ['vmlinuz', 'initrd.img', 'boot.img', 'manifest.json'].map((f) => join(out, f));
  const stamp = hashInputs(sources, `${basename(kernelDeb)}\0${basename(busyboxDeb)}`);
  if (
    !force &&
    existsSync(stampFile) &&
    readFileSync(stampFile, 'utf8') === stamp &&
    outputs.every((f) => existsSync(f))
  )
    return { built: false, out };

  say(`building the Linux guest from ${basename(kernelDeb)} and ${basename(busyboxDeb)}`);
  rmSync(stampFile, { force: true });
  const scratch = join(out, 'extract');
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  try {
    const k = join(scratch, 'kernel');
    const bb = join(scratch, 'busybox');
    must('dpkg-deb', ['-x', kernelDeb, k], `unpacking ${basename(kernelDeb)}`, 'dpkg-deb comes with dpkg');
    must('dpkg-deb', ['-x', busyboxDeb, bb], `unpacking ${basename(busyboxDeb)}`, 'dpkg-deb comes with dpkg');
    const vmlinuz = readdirSync(join(k, 'boot')).filter((f) => f.startsWith('vmlinuz-'));
    if (vmlinuz.length !== 1)
      throw new LinuxGuestBuildError(
        `expected one boot/vmlinuz-* in ${basename(kernelDeb)}, found ${vmlinuz.length}`,
      );
    const kernelRelease = vmlinuz[0].slice('vmlinuz-'.length);
    const busybox = join(bb, 'bin', 'busybox');
    const workload = join(scratch, 'vmferry-workload');
    buildWorkload(workload);

    const modules = MODULES.map((rel) => ({ name: basename(rel), data: moduleBytes(k, rel, busybox) }));
    const file = (path, data, mode = 0o644) => ({ path, type: 'file', mode, data });
    const dir = (path) => ({ path, type: 'dir', mode: 0o755 });
    const cpio = newcArchive([
      ...['bin', 'dev', 'proc', 'sys', 'tmp', 'run', 'lib', 'lib/modules'].map(dir),
      // The kernel opens /dev/console for /init before anything is mounted.
      { path: 'dev/console', type: 'char', mode: 0o600, major: 5, minor: 1 },
      file('init', readFileSync(join(root, 'guest', 'linux', 'init')), 0o755),
      file('bin/busybox', readFileSync(busybox), 0o755),
      { path: 'bin/sh', type: 'link', mode: 0o777, target: 'busybox' },
      file('bin/vmferry-workload', readFileSync(workload), 0o755),
      ...modules.map((m) => file(`lib/modules/${m.name}`, m.data)),
      file('lib/modules/load-order', Buffer.from(modules.map((m) => m.name).join('\n') + '\n')),
    ]);
    const initrd = join(out, 'initrd.img');
    writeFileSync(`${initrd}.tmp`, gzipSync(cpio, { level: 9 }));
    renameSync(`${initrd}.tmp`, initrd);
    const kernel = join(out, 'vmlinuz');
    copyFileSync(join(k, 'boot', vmlinuz[0]), `${kernel}.tmp`);
    chmodSync(`${kernel}.tmp`, 0o644);
    renameSync(`${kernel}.tmp`, kernel);
    const bootDisk = buildBootDisk(out, kernel, initrd);
    const manifest = {
      kernelPackage: basename(kernelDeb),
      busyboxPackage: basename(busyboxDeb),
      kernelRelease,
      modules: modules.map((m) => m.name),
      defaultBootAppend: DEFAULT_BOOT_APPEND,
      bootDisk,
    };
    writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    writeFileSync(stampFile, stamp);
    return { built: true, out };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] === self) {
  try {
    const force = process.argv.includes('--force');
    const r = buildLinuxGuest({ say: (l) => process.stderr.write(`build-linux-guest: ${l}\n`), force });
    process.stderr.write(
      `build-linux-guest: ${r.built ? 'built' : 'up to date'}: ${relative(process.cwd(), r.out)}\n`,
    );
  } catch (err) {
    if (!(err instanceof LinuxGuestBuildError)) throw err;
    process.stderr.write(`build-linux-guest: error: ${err.message}\n`);
    if (err.hint) process.stderr.write(`build-linux-guest: hint: ${err.hint}\n`);
    process.exit(1);
  }
}
