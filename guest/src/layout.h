/* Fixed physical layout of the vmferry guest. The host side mirrors these
 * numbers in src/guest/layout.ts; change both together. */
#ifndef VMFERRY_LAYOUT_H
#define VMFERRY_LAYOUT_H

#define PAGE_SIZE 4096u
#define WORDS_PER_PAGE (PAGE_SIZE / 4u)

/* The guest image (code, data, stack) is loaded at 1 MiB by the multiboot
 * loader; QEMU puts the multiboot info right after it. */
#define IMAGE_BASE 0x00100000u

/* One uint32 write generation per workload page, page i at GEN_TABLE + 4*i. */
#define GEN_TABLE 0x00400000u

/* The workload region: page i occupies [REGION_BASE + i*4096, +4096). */
#define REGION_BASE 0x01000000u

#define MAX_PAGES ((REGION_BASE - GEN_TABLE) / 4u)

#endif
