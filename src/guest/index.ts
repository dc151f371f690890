/**
 * The guest workload (guest/, a freestanding multiboot ELF) seen from the host.
 *
 * Booting: `qemu-system-x86_64 -accel tcg -machine pc -m <guestRamMiB(mem)>
 * -kernel <guestKernelPath()> -append "<guestAppend(...)>" -serial <chardev>`;
 * kernel command line `mem=<MiB> dirty=<MiB/s> [verify=<MiB/s|max>]`,
 * defaults mem=64 dirty=0 verify=max. The guest prints on COM1:
 *
 *     vmferry-guest filling mem=256 pages=65536 base=0x1000000 generations=0x400000 verify=max
 *     vmferry-guest ready mem=256 dirty=64 base=0x1000000 pages=65536
 *     vmferry-hb seq=1 written=16384 verified=150000 status=OK
 *     vmferry-hb seq=9 written=147456 verified=1300000 status=CORRUPT page=12345
 *
 * `GuestSerialParser` turns that stream into events; `assessGuestHealth`
 * judges a run of heartbeats as ok, corrupt or stalled. Counters and seq live
 * in guest RAM, so they go on across a live migration.
 *
 * Physical layout (fixed, see layout.ts and guest/src/layout.h):
 * - guest image at 1 MiB; QEMU's multiboot info right after it;
 * - generation table at 4 MiB (`GUEST_GENERATION_TABLE`): uint32 LE per page;
 * - workload page `i` at 16 MiB + i * 4096 (`guestPageAddress(i)`), holding
 *   `guestPageContent(i, generation[i])`.
 *
 * Corrupting a page from outside: with `-object memory-backend-file,id=m0,
 * size=<N>M,mem-path=FILE,share=on -machine pc,memory-backend=m0 -m <N>`, the
 * file offset of a low-RAM byte equals its guest physical address, so writing
 * any different bytes at offset `guestPageAddress(page)` makes the guest report
 * `status=CORRUPT page=<page>` once its verifier reaches the page (one pass
 * over 256 MiB takes about half a second under TCG). With a dirty rate the
 * guest may rewrite the page first and heal it; corrupt with dirty=0 to be sure.
 *
 * The Linux guest (guest/linux/, built by scripts/build-linux-guest.mjs):
 * Debian's cloud kernel with an initramfs whose workload checks memory, a
 * virtio data disk and a ping to a peer, and prints the same heartbeat with
 * `mem= disk= net=` fields; see linux-guest.ts and guest/linux/README.md.
 *
 * Live migration under TCG with QEMU < 9.0 (Debian 12 has 7.2) loses writes to
 * pages the vCPU keeps in its TLB when the RAM size is a multiple of 256 KiB;
 * the guest then reports CORRUPT or stops after the switch-over. Give both
 * sides a RAM size like `-m 524296K` (512 MiB + 8 KiB); see guest/README.md.
 */
export {
  GuestSerialParser,
  parseGuestLine,
  type GuestDiskStatus,
  type GuestEvent,
  type GuestHeartbeatEvent,
  type GuestMessageEvent,
  type GuestReadyEvent,
} from './heartbeat-parser.js';
export {
  assessGuestHealth,
  type GuestHealth,
  type GuestHealthOptions,
  type GuestHealthState,
  type GuestParts,
} from './health.js';
export {
  GUEST_GENERATION_TABLE,
  GUEST_MAX_MEM_MIB,
  GUEST_PAGE_SIZE,
  GUEST_REGION_BASE,
  guestGenerationAddress,
  guestPageAddress,
  guestRamMiB,
} from './layout.js';
export { guestPageContent, guestPageSeed } from './pattern.js';
export {
  GUEST_DEFAULT_WORKLOAD,
  GUEST_MAX_RATE_MIBPS,
  guestAppend,
  guestKernelPath,
  type GuestWorkload,
} from './workload.js';
export {
  LINUX_GUEST_BLOCK_MAGIC,
  LINUX_GUEST_BLOCK_SIZE,
  checkLinuxGuest,
  linuxGuestAppend,
  linuxGuestBlockContent,
  linuxGuestFiles,
  linuxGuestRamMiB,
  writeLinuxGuestBootDisk,
  type LinuxGuestFiles,
  type LinuxGuestManifest,
  type LinuxGuestWorkload,
} from './linux-guest.js';
