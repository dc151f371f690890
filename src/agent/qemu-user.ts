import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, statSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { HostSetupError } from '../errors.js';

/** The unprivileged user QEMU runs as when the agent runs as root ([vmferry] qemu_user). */
export interface QemuUser {
  name: string;
  uid: number;
  gid: number;
  /** Its groups, supplementary ones included (kvm, for /dev/kvm). */
  groups: number[];
}

/** Looks `name` up with id(1); a HostSetupError saying how to create it when it is missing. */
export function lookUpQemuUser(name: string): QemuUser {
  const id = (flag: string): string => {
    const r = spawnSync('id', [flag, name], { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new HostSetupError(`the user QEMU runs as, ${name} ([vmferry] qemu_user), does not exist`, {
        hint: `run node scripts/setup.mjs as root, or: useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${name}; usermod -aG kvm ${name}`,
      });
    }
    return r.stdout.trim();
  };
  return {
    name,
    uid: Number(id('-u')),
    gid: Number(id('-g')),
    groups: id('-G').split(/\s+/).map(Number),
  };
}

/** Whether `user` has every access in `want` (r, w, x) to a file with these owner, group and mode bits. Pure. */
export function mayAccess(
  user: Pick<QemuUser, 'uid' | 'groups'>,
  file: Pick<Stats, 'uid' | 'gid' | 'mode'>,
  want: readonly ('r' | 'w' | 'x')[],
): boolean {
  if (user.uid === 0) return true;
  const shift = file.uid === user.uid ? 6 : user.groups.includes(file.gid) ? 3 : 0;
  const bits = (file.mode >> shift) & 0o7;
  const need = { r: 4, w: 2, x: 1 } as const;
  return want.every((w) => (bits & need[w]) !== 0);
}

/**
 * Why `user` cannot open `path` as asked (every directory above it searchable,
 * the file itself with `want`), or undefined when it can. Reads modes with
 * `stat`, passed in; POSIX ACLs are not looked at.
 */
export function whyUnreachable(
  user: QemuUser,
  path: string,
  want: readonly ('r' | 'w' | 'x')[],
  stat: (p: string) => Pick<Stats, 'uid' | 'gid' | 'mode'> = statSync,
): string | undefined {
  const above: string[] = [];
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    above.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  for (const dir of above) {
    const s = stat(dir);
    if (!mayAccess(user, s, ['x']))
      return `${user.name} cannot enter ${dir} (owner ${s.uid}, group ${s.gid}, mode ${(s.mode & 0o7777).toString(8)})`;
  }
  const s = stat(path);
  if (!mayAccess(user, s, want))
    return `${user.name} cannot ${want.includes('w') ? 'read and write' : 'read'} ${path} (owner ${s.uid}, group ${s.gid}, mode ${(s.mode & 0o7777).toString(8)})`;
  return undefined;
}

/**
 * Lays the agent's state directory out for QEMU running as `user`: the directory
 * itself, `vms/` and `instances/` searchable by the user's group only (0710, root's otherwise:
 * the journal, the API socket and the TLS key stay out of its reach), and the
 * directories QEMU works in — each VM's run directory, `tunnels/` (its migration
 * sockets) and `qemu-tls/` (its TLS credentials) — owned by the user. Refuses a
 * state directory the user cannot reach.
 */
export function layOutStateDirFor(
  user: QemuUser,
  stateDir: string,
  qemuTlsDir: string | undefined,
  instancesPath: string,
): void {
  // The default instances_path is the agent's too; one an operator chose is theirs to open to QEMU.
  const own = instancesPath === join(stateDir, 'instances') ? [instancesPath] : [];
  for (const dir of [stateDir, join(stateDir, 'vms'), ...own]) {
    mkdirSync(dir, { recursive: true, mode: 0o710 });
    chownSync(dir, 0, user.gid);
    chmodSync(dir, 0o710);
  }
  const why = whyUnreachable(user, join(stateDir, 'vms'), ['x']);
  if (why !== undefined) {
    throw new HostSetupError(`QEMU runs as ${user.name} and must reach the state directory: ${why}`, {
      hint: `let others search the directories above ${stateDir} (chmod o+x), or choose another --state-dir`,
    });
  }
  giveTo(user, join(stateDir, 'tunnels'));
  if (qemuTlsDir !== undefined) giveTo(user, qemuTlsDir);
}

/** Makes `dir` (created if missing, mode 0700) and everything in it `user`'s. */
export function giveTo(user: QemuUser, dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chownSync(dir, user.uid, user.gid);
  chmodSync(dir, 0o700);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) giveTo(user, path);
    else chownSync(path, user.uid, user.gid);
  }
}

/**
 * Whether QEMU can run post-copy as `user`. A post-copy destination handles the
 * guest's page faults with userfaultfd, which QEMU 7.2 opens with the system call:
 * an unprivileged process may only when vm.unprivileged_userfaultfd is 1 (Fedora's
 * QEMU package sets it for the same reason; QEMU 8.1 could use /dev/userfaultfd).
 * `user` is whom QEMU runs as; `sysctl` that file's text, or undefined where there is none.
 */
export function postcopyAllowed(
  user: Pick<QemuUser, 'name' | 'uid'>,
  sysctl: string | undefined,
): string | undefined {
  if (user.uid === 0 || sysctl === undefined || sysctl.trim() === '1') return undefined;
  return `post-copy is off: QEMU runs as ${user.name} and vm.unprivileged_userfaultfd is ${sysctl.trim()}, so QEMU 7.2 cannot handle the guest's page faults (set it to 1 to allow post-copy; scripts/setup.mjs does)`;
}
