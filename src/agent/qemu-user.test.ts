import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mayAccess, postcopyAllowed, whyUnreachable, type QemuUser } from './qemu-user.js';

const qemu: QemuUser = { name: 'vmferry-qemu', uid: 999, gid: 995, groups: [995, 108] };

describe("QEMU's user and the files it opens", () => {
  it('reads owner, group or other bits, whichever applies', () => {
    assert.equal(mayAccess(qemu, { uid: 999, gid: 0, mode: 0o600 }, ['r', 'w']), true);
    assert.equal(mayAccess(qemu, { uid: 0, gid: 995, mode: 0o710 }, ['x']), true);
    assert.equal(mayAccess(qemu, { uid: 0, gid: 995, mode: 0o700 }, ['x']), false);
    assert.equal(mayAccess(qemu, { uid: 0, gid: 0, mode: 0o644 }, ['r']), true);
    assert.equal(mayAccess(qemu, { uid: 0, gid: 0, mode: 0o644 }, ['r', 'w']), false);
    // The owner's bits apply to the owner even when the others' would let it in.
    assert.equal(mayAccess(qemu, { uid: 999, gid: 0, mode: 0o077 }, ['r']), false);
  });

  it('says which directory or file stops it', () => {
    const modes: Record<string, { uid: number; gid: number; mode: number }> = {
      '/': { uid: 0, gid: 0, mode: 0o755 },
      '/srv': { uid: 0, gid: 0, mode: 0o755 },
      '/srv/private': { uid: 0, gid: 0, mode: 0o700 },
      '/srv/private/disk.img': { uid: 0, gid: 0, mode: 0o666 },
      '/srv/disks': { uid: 0, gid: 0, mode: 0o755 },
      '/srv/disks/disk.img': { uid: 0, gid: 0, mode: 0o644 },
      '/srv/disks/mine.img': { uid: 999, gid: 995, mode: 0o600 },
    };
    const stat = (p: string) => {
      const s = modes[p];
      if (s === undefined) throw new Error(`no ${p}`);
      return s;
    };
    assert.equal(
      whyUnreachable(qemu, '/srv/private/disk.img', ['r', 'w'], stat),
      'vmferry-qemu cannot enter /srv/private (owner 0, group 0, mode 700)',
    );
    assert.equal(
      whyUnreachable(qemu, '/srv/disks/disk.img', ['r', 'w'], stat),
      'vmferry-qemu cannot read and write /srv/disks/disk.img (owner 0, group 0, mode 644)',
    );
    assert.equal(whyUnreachable(qemu, '/srv/disks/disk.img', ['r'], stat), undefined);
    assert.equal(whyUnreachable(qemu, '/srv/disks/mine.img', ['r', 'w'], stat), undefined);
  });

  it('turns post-copy off for an unprivileged QEMU unless the kernel lets it use userfaultfd', () => {
    assert.equal(postcopyAllowed(qemu, '1\n'), undefined);
    assert.equal(postcopyAllowed({ name: 'root', uid: 0 }, '0\n'), undefined, 'root may always');
    assert.equal(postcopyAllowed(qemu, undefined), undefined, 'no such setting: no restriction');
    assert.equal(
      postcopyAllowed(qemu, '0\n'),
      "post-copy is off: QEMU runs as vmferry-qemu and vm.unprivileged_userfaultfd is 0, so QEMU 7.2 cannot handle the guest's page faults (set it to 1 to allow post-copy; scripts/setup.mjs does)",
    );
  });
});
