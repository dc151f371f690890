#!/usr/bin/env node
// Brings a fresh machine to the point where vmferry runs: npm packages, QEMU
// from Debian, the TypeScript build, the guest build and the Linux test guest
// (scripts/build-linux-guest.mjs). Only Node built-ins here: this runs before
// node_modules exists. A second run changes nothing.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LinuxGuestBuildError, buildLinuxGuest, findTool } from './build-linux-guest.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');

function say(line) {
  if (!quiet) process.stderr.write(`setup: ${line}\n`);
}

function fail(message, hint) {
  process.stderr.write(`setup: error: ${message}\n`);
  if (hint) process.stderr.write(`setup: hint: ${hint}\n`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  if (r.error) return { ok: false, why: r.error.message };
  return { ok: r.status === 0, why: `exit status ${r.status}` };
}

function has(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

// `--browser`: only Debian's chromium, for the tests that drive a real browser (the dashboard's).
// Never fatal: where it cannot be installed those tests skip and say why.
if (process.argv.includes('--browser')) {
  if (has('chromium', ['--version'])) process.exit(0);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !has('apt-get', ['--version'])) {
    say('chromium is missing; the browser tests will be skipped (as root: apt-get install -y chromium)');
    process.exit(0);
  }
  say('installing chromium from Debian for the browser tests (apt-get update first)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = run('apt-get', ['update', '-qq'], { env });
  if (r.ok) r = run('apt-get', ['install', '-y', '-qq', 'chromium'], { env });
  if (!r.ok) say(`apt-get could not install chromium (${r.why}); the browser tests will be skipped`);
  process.exit(0);
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 10)) {
  fail(`Node.js ${process.versions.node} is too old`, 'install Node.js 20.10 or newer');
}

// npm packages: reinstall when package-lock.json changed since the last install.
const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.vmferry-lock-sha256');
const lockHash = createHash('sha256').update(readFileSync(lock)).digest('hex');
if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== lockHash) {
  say('installing npm packages (npm ci)');
  const r = run('npm', ['ci', '--no-audit', '--no-fund']);
  if (!r.ok)
    fail(`npm ci failed (${r.why})`, 'check that the npm registry is reachable, then run npm ci by hand');
  writeFileSync(stamp, lockHash);
}

// Debian packages the project needs at run time.
const debianNeeds = [
  { pkg: 'qemu-system-x86', present: () => has('qemu-system-x86_64') },
  { pkg: 'qemu-utils', present: () => has('qemu-img') },
  { pkg: 'iproute2', present: () => has('ip', ['-V']) },
  { pkg: 'openssl', present: () => has('openssl', ['version']) },
  { pkg: 'gcc', present: () => has('gcc') },
  { pkg: 'binutils', present: () => has('ld') },
  { pkg: 'make', present: () => has('make') },
  // The native tunnel relay (native/vmferry-relay.c) links OpenSSL 3.
  { pkg: 'libssl-dev', present: () => existsSync('/usr/include/openssl/ssl.h') },
  // The Linux guest's boot disk: a FAT image (mkfs.fat, mcopy) with syslinux.
  { pkg: 'syslinux', present: () => has('syslinux', ['--version']) },
  { pkg: 'mtools', present: () => has('mcopy') },
  { pkg: 'dosfstools', present: () => findTool('mkfs.fat') !== undefined },
];
const missing = debianNeeds.filter((n) => !n.present()).map((n) => n.pkg);
if (missing.length > 0) {
  const cmd = `apt-get update && apt-get install -y ${missing.join(' ')}`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) fail(`missing Debian packages: ${missing.join(', ')}`, `as root, run: ${cmd}`);
  if (!has('apt-get', ['--version']))
    fail(`missing packages: ${missing.join(', ')}`, "install them with your distribution's package manager");
  say(`installing ${missing.join(' ')} from Debian (apt-get update first)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = run('apt-get', ['update', '-qq'], { env });
  if (r.ok) r = run('apt-get', ['install', '-y', '-qq', ...missing], { env });
  if (!r.ok) fail(`apt-get could not install ${missing.join(' ')} (${r.why})`, `as root, run: ${cmd}`);
  const still = debianNeeds.filter((n) => !n.present()).map((n) => n.pkg);
  if (still.length > 0) fail(`still missing after apt-get: ${still.join(', ')}`, `as root, run: ${cmd}`);
}

// The user agents running as root start QEMU as (`[vmferry] qemu_user`): QEMU never runs as root.
// In the kvm group, for /dev/kvm. Only root can create it; others run QEMU as themselves.
if (typeof process.getuid === 'function' && process.getuid() === 0) {
  const user = 'vmferry-qemu';
  if (!has('id', [user])) {
    say(`creating the system user ${user} that agents run QEMU as`);
    const r = run('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--home-dir',
      '/nonexistent',
      '--shell',
      '/usr/sbin/nologin',
      user,
    ]);
    if (!r.ok)
      fail(`useradd ${user} failed (${r.why})`, `as root, run: useradd --system --user-group ${user}`);
  }
  const groups = spawnSync('id', ['-nG', user], { encoding: 'utf8' }).stdout ?? '';
  if (has('getent', ['group', 'kvm']) && !groups.split(/\s+/).includes('kvm')) {
    const r = run('usermod', ['-aG', 'kvm', user]);
    if (!r.ok) fail(`usermod -aG kvm ${user} failed (${r.why})`, `as root, run: usermod -aG kvm ${user}`);
  }
}

// Post-copy with QEMU unprivileged: QEMU 7.2 handles the guest's page faults with userfaultfd(2),
// which the kernel allows a non-root process only with this setting (Fedora's QEMU package sets it
// too). It lets every user of this host use userfaultfd: see docs/security.md.
if (typeof process.getuid === 'function' && process.getuid() === 0) {
  const uffd = '/proc/sys/vm/unprivileged_userfaultfd';
  if (existsSync(uffd) && readFileSync(uffd, 'utf8').trim() !== '1') {
    say('allowing userfaultfd to unprivileged processes (vm.unprivileged_userfaultfd = 1), for post-copy');
    writeFileSync('/etc/sysctl.d/60-vmferry-postcopy.conf', 'vm.unprivileged_userfaultfd = 1\n');
    const r = run('sysctl', ['-q', '-w', 'vm.unprivileged_userfaultfd=1']);
    if (!r.ok) say(`sysctl failed (${r.why}): agents will report post-copy as unavailable`);
  }
}

// TypeScript build (incremental: a no-op when nothing changed).
{
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = run(process.execPath, [tsc, '-p', 'tsconfig.json']);
  if (!r.ok) fail(`the TypeScript build failed (${r.why})`);
}

// The guest workload (make rebuilds only when its sources changed).
{
  const r = run('make', ['-s', '-C', 'guest'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (!r.ok) fail(`building the guest failed (${r.why})`, 'run make -C guest to see why');
}
// The native tunnel relay. Never fatal: without it agents run the TypeScript relay
// ([vmferry] tunnel_relay = auto) and say why at start-up and in their plans.
{
  const r = run('make', ['-s', '-C', 'native'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (!r.ok)
    say(
      `building the native tunnel relay failed (${r.why}): agents will use the TypeScript relay; ` +
        'run make -C native to see why (it needs gcc and libssl-dev)',
    );
}
// The Linux test guest: kernel and busybox from Debian (apt-get download, not
// installed), initramfs and boot disk; quick when its stamp matches.
try {
  buildLinuxGuest({ say });
} catch (err) {
  if (!(err instanceof LinuxGuestBuildError)) throw err;
  fail(`building the Linux guest failed: ${err.message}`, err.hint);
}
say('ready');
