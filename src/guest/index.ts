// Public face of src/guest (what the guest prints, how it is booted and laid out: README.md here).
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
  writeLinuxGuestDiskFill,
  type LinuxGuestFiles,
  type LinuxGuestManifest,
  type LinuxGuestWorkload,
} from './linux-guest.js';
