/** Size of a guest page, in bytes; the workload rewrites and verifies whole pages. */
export const GUEST_PAGE_SIZE = 4096;

/** Physical address of the first workload page (16 MiB). Page `i` is at `GUEST_REGION_BASE + i * 4096`. */
export const GUEST_REGION_BASE = 0x0100_0000;

/** Physical address of the generation table: one little-endian uint32 per page, page `i` at `+ 4 * i`. */
export const GUEST_GENERATION_TABLE = 0x0040_0000;

/** Largest workload vmferry asks for, in MiB: with {@link guestRamMiB} the VM stays below 3.5 GiB, all of it low RAM on `-machine pc`. */
export const GUEST_MAX_MEM_MIB = 3040;

/** Physical address (== offset in a `memory-backend-file`) of workload page `page`. */
export function guestPageAddress(page: number): number {
  checkPage(page);
  return GUEST_REGION_BASE + page * GUEST_PAGE_SIZE;
}

/** Physical address (== file offset) of the generation counter of workload page `page`. */
export function guestGenerationAddress(page: number): number {
  checkPage(page);
  return GUEST_GENERATION_TABLE + page * 4;
}

/**
 * VM RAM (`-m`, MiB) that holds a workload of `memMiB`: the region starts at
 * 16 MiB and the BIOS keeps the top 128 KiB, so 32 MiB more is enough.
 */
export function guestRamMiB(memMiB: number): number {
  if (!Number.isInteger(memMiB) || memMiB < 1 || memMiB > GUEST_MAX_MEM_MIB) {
    throw new RangeError(`memMiB must be an integer from 1 to ${GUEST_MAX_MEM_MIB}, got ${memMiB}`);
  }
  return memMiB + 32;
}

function checkPage(page: number): void {
  if (!Number.isInteger(page) || page < 0 || page >= (GUEST_MAX_MEM_MIB * 1024 * 1024) / GUEST_PAGE_SIZE) {
    throw new RangeError(`page must be a page index of the workload region, got ${page}`);
  }
}
