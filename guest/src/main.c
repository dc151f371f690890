/*
 * The vmferry guest workload: fills a region of RAM with content it can
 * recompute, rewrites pages at the requested rate, verifies pages with all the
 * time left, and prints a heartbeat line on COM1 once a second. All state
 * lives in guest RAM, so it survives live migration and the counters go on.
 */
#include <stdint.h>
#include "clock.h"
#include "console.h"
#include "cpu.h"
#include "io.h"
#include "layout.h"
#include "params.h"
#include "pattern.h"

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002u
#define MB_INFO_MEMORY (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MMAP (1u << 6)

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower;
	uint32_t mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count;
	uint32_t mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length;
	uint32_t mmap_addr;
};

struct mb_mmap_entry {
	uint32_t size;
	uint64_t addr;
	uint64_t len;
	uint32_t type;
} __attribute__((packed));

/* After this many back-to-back page writes one page is verified, so the
 * verifier never starves when the dirty rate exceeds what the CPU can do. */
#define MAX_WRITE_BURST 8u
#define MAX_MISMATCH_REPORTS 16u

extern char __image_end[];

static volatile uint32_t *const generation = (volatile uint32_t *)GEN_TABLE;

static uint32_t pages;
static uint32_t write_stride;
static uint32_t write_pos;
static uint32_t verify_pos;
static uint64_t written;
static uint64_t verified;
static uint64_t seq;
static int corrupt;
static uint32_t corrupt_page;
static uint32_t reported[MAX_MISMATCH_REPORTS];
static uint32_t mismatch_reports;

static uint32_t *page_addr(uint32_t p)
{
	return (uint32_t *)(REGION_BASE + p * PAGE_SIZE);
}

/* End of the usable RAM that starts at or below REGION_BASE, capped at 4 GiB. */
static uint64_t usable_end(const struct mb_info *mbi)
{
	if (mbi->flags & MB_INFO_MMAP) {
		uint32_t at = mbi->mmap_addr;
		uint32_t end = mbi->mmap_addr + mbi->mmap_length;
		while (at < end) {
			const struct mb_mmap_entry *e = (const struct mb_mmap_entry *)at;
			uint64_t stop = e->addr + e->len;
			if (e->type == 1 && e->addr <= REGION_BASE && stop > REGION_BASE)
				return stop > 0x100000000ull ? 0x100000000ull : stop;
			at += e->size + 4;
		}
		return 0;
	}
	if (mbi->flags & MB_INFO_MEMORY)
		return 0x100000ull + (uint64_t)mbi->mem_upper * 1024;
	return 0;
}

static uint32_t gcd(uint32_t a, uint32_t b)
{
	while (b) {
		uint32_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* A stride coprime to the page count near the golden ratio of it: stepping by
 * it visits every page once per cycle, consecutive writes far apart. */
static uint32_t pick_stride(uint32_t n)
{
	if (n < 3)
		return 1;
	uint32_t s = (uint32_t)(((uint64_t)n * 40503u) >> 16);
	if (s == 0)
		s = 1;
	while (gcd(s, n) != 1)
		s++;
	return s;
}

static void write_page(uint32_t p)
{
	uint32_t g = generation[p] + 1;
	generation[p] = g;
	page_fill(page_addr(p), page_seed(p, g));
	written++;
}

/* One diagnostic line for each of the first few bad pages. */
static void report_mismatch(uint32_t p)
{
	for (uint32_t i = 0; i < mismatch_reports; i++)
		if (reported[i] == p)
			return;
	if (mismatch_reports == MAX_MISMATCH_REPORTS)
		return;
	reported[mismatch_reports++] = p;

	uint32_t g = generation[p];
	uint32_t expected;
	const volatile uint32_t *w = page_addr(p);
	uint32_t i = page_first_bad_word(w, page_seed(p, g), &expected);
	put_str("vmferry-guest mismatch page=");
	put_u64(p);
	put_str(" generation=");
	put_u64(g);
	if (i < WORDS_PER_PAGE) {
		put_str(" word=");
		put_u64(i);
		put_str(" expected=0x");
		put_hex(expected);
		put_str(" found=0x");
		put_hex(w[i]);
	}
	put_str("\n");
}

static void verify_page(uint32_t p)
{
	if (page_check(page_addr(p), page_seed(p, generation[p])) != 0) {
		if (!corrupt) {
			corrupt = 1;
			corrupt_page = p;
		}
		report_mismatch(p);
	}
	verified++;
}

static void heartbeat(void)
{
	seq++;
	put_str("vmferry-hb seq=");
	put_u64(seq);
	put_str(" written=");
	put_u64(written);
	put_str(" verified=");
	put_u64(verified);
	if (corrupt) {
		put_str(" status=CORRUPT page=");
		put_u64(corrupt_page);
	} else {
		put_str(" status=OK");
	}
	put_str("\n");
}

static void fill_region(void)
{
	uint64_t next_progress = clock_now() + CLOCK_HZ;
	for (uint32_t p = 0; p < pages; p++) {
		generation[p] = 0;
		page_fill(page_addr(p), page_seed(p, 0));
		if ((p & 63) == 0 && clock_now() >= next_progress) {
			next_progress += CLOCK_HZ;
			put_str("vmferry-guest filling progress=");
			put_u64(p);
			put_str("/");
			put_u64(pages);
			put_str("\n");
		}
	}
}

static void run(const struct params *prm)
{
	const uint64_t unit = CLOCK_HZ;	/* credit for one page */
	const uint32_t write_pps = prm->dirty_mibps * 256u;
	const uint32_t verify_pps = prm->verify_mibps * 256u;
	const uint64_t write_cap = ((uint64_t)write_pps / 4 + 1) * unit;	/* 250 ms backlog */
	const uint64_t verify_cap = ((uint64_t)verify_pps / 20 + 1) * unit;	/* 50 ms */
	uint64_t write_credit = 0, verify_credit = 0;
	uint64_t last = clock_now();
	uint64_t next_hb = last + CLOCK_HZ;
	uint64_t written_at_hb = written;
	uint32_t burst = 0;
	int behind = 0;

	for (;;) {
		uint64_t now = clock_now();
		uint64_t el64 = now - last;
		uint32_t el = el64 > CLOCK_HZ ? CLOCK_HZ : (uint32_t)el64;
		last = now;

		if (write_pps) {
			write_credit += (uint64_t)el * write_pps;
			if (write_credit > write_cap) {
				write_credit = write_cap;
				behind = 1;
			}
		}
		if (verify_pps) {
			verify_credit += (uint64_t)el * verify_pps;
			if (verify_credit > verify_cap)
				verify_credit = verify_cap;
		}

		if (now >= next_hb) {
			heartbeat();
			if (behind) {
				put_str("vmferry-guest behind dirty=");
				put_u64(prm->dirty_mibps);
				put_str(" wrote=");
				put_u64(written - written_at_hb);
				put_str(" wanted=");
				put_u64(write_pps);
				put_str(" pages in the last second\n");
				behind = 0;
			}
			written_at_hb = written;
			next_hb += CLOCK_HZ;
			if (next_hb <= now)
				next_hb = now + CLOCK_HZ;
		}

		int want_write = write_credit >= unit;
		int want_verify = verify_pps == 0 || verify_credit >= unit;
		if (want_write && (burst < MAX_WRITE_BURST || !want_verify)) {
			write_page(write_pos);
			write_pos += write_stride;
			if (write_pos >= pages)
				write_pos -= pages;
			write_credit -= unit;
			burst++;
		} else if (want_verify) {
			verify_page(verify_pos);
			if (++verify_pos == pages)
				verify_pos = 0;
			if (verify_pps)
				verify_credit -= unit;
			burst = 0;
		} else {
			wait_for_tick();
		}
	}
}

void guest_main(uint32_t magic, const struct mb_info *mbi);

void guest_main(uint32_t magic, const struct mb_info *mbi)
{
	console_init();
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		put_str("vmferry-guest error: not started by a multiboot loader\n");
		halt_forever();
	}
	if ((uint32_t)__image_end > GEN_TABLE) {
		put_str("vmferry-guest error: image overlaps the generation table\n");
		halt_forever();
	}
	cpu_init();
	clock_init();

	const char *cmdline = (mbi->flags & MB_INFO_CMDLINE) ? (const char *)mbi->cmdline : 0;
	put_str("vmferry-guest boot cmdline=\"");
	put_str(cmdline ? cmdline : "");
	put_str("\"\n");

	/* One timer interrupt before anything else: a hypervisor that runs the
	 * guest's first instructions but cannot deliver or return from interrupts
	 * (seen with kvm-pvm) stops it here, right after the boot line, instead
	 * of after the fill. */
	wait_for_tick();

	struct params prm;
	params_parse(cmdline, &prm);

	uint64_t end = usable_end(mbi);
	uint32_t avail_mib = end > REGION_BASE ? (uint32_t)((end - REGION_BASE) >> 20) : 0;
	if (avail_mib > MAX_PAGES / 256)
		avail_mib = MAX_PAGES / 256;
	if (avail_mib == 0) {
		put_str("vmferry-guest error: no usable RAM at 0x");
		put_hex(REGION_BASE);
		put_str("; give the VM more memory\n");
		halt_forever();
	}
	if (prm.mem_mib > avail_mib) {
		put_str("vmferry-guest warning: mem=");
		put_u64(prm.mem_mib);
		put_str(" does not fit, clamped to mem=");
		put_u64(avail_mib);
		put_str(" (usable RAM ends at 0x");
		put_hex((uint32_t)(end - 1));
		put_str(")\n");
		prm.mem_mib = avail_mib;
	}

	pages = prm.mem_mib * 256u;
	write_stride = pick_stride(pages);
	put_str("vmferry-guest filling mem=");
	put_u64(prm.mem_mib);
	put_str(" pages=");
	put_u64(pages);
	put_str(" base=0x");
	put_hex(REGION_BASE);
	put_str(" generations=0x");
	put_hex(GEN_TABLE);
	put_str(" verify=");
	if (prm.verify_mibps)
		put_u64(prm.verify_mibps);
	else
		put_str("max");
	put_str("\n");
	fill_region();

	put_str("vmferry-guest ready mem=");
	put_u64(prm.mem_mib);
	put_str(" dirty=");
	put_u64(prm.dirty_mibps);
	put_str(" base=0x");
	put_hex(REGION_BASE);
	put_str(" pages=");
	put_u64(pages);
	put_str("\n");
	run(&prm);
}
