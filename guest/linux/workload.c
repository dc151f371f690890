/*
 * The vmferry Linux guest's workload (started by /init of the initramfs).
 * Keeps a region of its RAM filled with content it can recompute and checks
 * it all the time while rewriting pages at a rate; does the same with 4 KiB
 * blocks of a virtio disk (O_DIRECT, so every check reads the device); pings
 * a peer; prints a heartbeat on the console (ttyS0) once a second.
 * Generations live in this process's RAM and the blocks on the disk, so a
 * live migration with a shared disk carries on checking what the source
 * wrote. Parameters come from the kernel command line (vmf.*); see
 * guest/linux/README.md.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>
#include "layout.h"
#include "pattern.h"

#define MAX_RATE 1048576u
#define MAX_WRITE_BURST 8u
#define VERIFY_CHUNK_PAGES 16u
#define DISK_IO_BLOCKS 16u
#define DISK_DEFAULT_MAX_MIB 64u
#define MAX_MISMATCH_REPORTS 16u
/* Pages whose physical address is printed, spread over the region. */
#define PHYS_PROBES 8u
#define NET_DOWN_AFTER_NS (3 * NS_PER_S)
#define NS_PER_S 1000000000ll
/* "VDSK": first word of every disk block, then block number and generation. */
#define BLOCK_MAGIC 0x4b534456u
#define RATE_MAX UINT32_MAX

struct params {
	uint32_t mem_mib;
	uint32_t dirty_mibps;
	uint32_t verify_mibps; /* RATE_MAX: as fast as possible */
	const char *disk;
	uint32_t disk_mib; /* 0: the whole device, up to DISK_DEFAULT_MAX_MIB */
	uint32_t disk_dirty; /* blocks/s */
	uint32_t disk_verify; /* blocks/s, RATE_MAX: as fast as possible */
	int disk_fill_host; /* the host wrote every block at generation 0 before boot: no fill here */
	const char *peer;
};

static struct params p = {
	.mem_mib = 64,
	.dirty_mibps = 0,
	.verify_mibps = RATE_MAX,
	.disk = NULL,
	.disk_mib = 0,
	.disk_dirty = 16,
	.disk_verify = 1024,
	.disk_fill_host = 0,
	.peer = NULL,
};

static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	/* One write per line: a line is never split between two writes. */
	ssize_t off = 0;
	while (off < n) {
		ssize_t w = write(1, line + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += w;
	}
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- parameters ---- */

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_rate(const char *s, uint32_t *out)
{
	if (strcmp(s, "max") == 0) {
		*out = RATE_MAX;
		return 0;
	}
	return parse_u32(s, 1, MAX_RATE, out);
}

static void parse_cmdline(char *cmdline)
{
	for (char *tok = strtok(cmdline, " \t\n"); tok != NULL; tok = strtok(NULL, " \t\n")) {
		if (strncmp(tok, "vmf.", 4) != 0)
			continue;
		char *eq = strchr(tok, '=');
		if (eq == NULL) {
			say("vmferry-guest warning: %s has no value, ignored", tok);
			continue;
		}
		*eq = '\0';
		const char *key = tok + 4, *val = eq + 1;
		int bad = 0;
		if (strcmp(key, "mem") == 0)
			bad = parse_u32(val, 1, 1u << 20, &p.mem_mib);
		else if (strcmp(key, "dirty") == 0)
			bad = parse_u32(val, 0, MAX_RATE, &p.dirty_mibps);
		else if (strcmp(key, "verify") == 0)
			bad = parse_rate(val, &p.verify_mibps);
		else if (strcmp(key, "disk") == 0)
			p.disk = val[0] != '\0' ? val : NULL;
		else if (strcmp(key, "diskmib") == 0)
			bad = parse_u32(val, 1, 1u << 20, &p.disk_mib);
		else if (strcmp(key, "diskdirty") == 0)
			bad = parse_u32(val, 0, MAX_RATE, &p.disk_dirty);
		else if (strcmp(key, "diskverify") == 0)
			bad = parse_rate(val, &p.disk_verify);
		else if (strcmp(key, "diskfill") == 0) {
			bad = strcmp(val, "host") != 0 && strcmp(val, "guest") != 0;
			if (!bad)
				p.disk_fill_host = strcmp(val, "host") == 0;
		}
		else if (strcmp(key, "peer") == 0) {
			struct in_addr a;
			bad = inet_pton(AF_INET, val, &a) == 1 ? 0 : -1;
			if (!bad)
				p.peer = val;
		} else if (strcmp(key, "ip") == 0 || strcmp(key, "nic") == 0)
			continue; /* /init configures the NIC */
		else {
			say("vmferry-guest warning: unknown parameter vmf.%s, ignored", key);
			continue;
		}
		if (bad)
			say("vmferry-guest warning: bad value vmf.%s=%s, using the default", key, val);
	}
}

/* ---- pacing: a credit that grows with time, backlog capped at 250 ms ---- */

struct pace {
	uint32_t per_s; /* units per second; RATE_MAX = unlimited */
	int64_t last_ns;
	double credit;
};

static void pace_refill(struct pace *pc, int64_t now)
{
	if (pc->per_s == RATE_MAX)
		return;
	pc->credit += (double)(now - pc->last_ns) * pc->per_s / NS_PER_S;
	pc->last_ns = now;
	double cap = pc->per_s / 4.0 + 1;
	if (pc->credit > cap)
		pc->credit = cap;
}

static int pace_take(struct pace *pc)
{
	if (pc->per_s == RATE_MAX)
		return 1;
	if (pc->credit < 1)
		return 0;
	pc->credit -= 1;
	return 1;
}

/* Nanoseconds until one unit is due (0 when it is due now). */
static int64_t pace_wait_ns(const struct pace *pc)
{
	if (pc->per_s == 0)
		return INT64_MAX;
	if (pc->per_s == RATE_MAX || pc->credit >= 1)
		return 0;
	return (int64_t)((1 - pc->credit) * NS_PER_S / pc->per_s) + 1;
}

/* A stride near 0.618 n that is coprime with n: consecutive rewrites are far apart. */
static uint32_t gcd(uint32_t a, uint32_t b)
{
	while (b != 0) {
		uint32_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static uint32_t spread_stride(uint32_t n)
{
	if (n <= 2)
		return 1;
	uint32_t s = (uint32_t)((uint64_t)n * 618 / 1000);
	if (s == 0)
		s = 1;
	while (gcd(s, n) != 1)
		s++;
	return s % n;
}

/* ---- memory ---- */

static uint32_t *region;
static uint32_t *mem_gen;
static uint32_t pages;
static uint32_t mem_write_pos, mem_write_stride, mem_verify_pos;
static uint64_t mem_written, mem_verified;
static int mem_corrupt;
static uint32_t mem_corrupt_page;
static uint32_t mem_reports;

static uint64_t phys_addr(const void *virt)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return 0;
	uint64_t entry = 0;
	off_t off = (off_t)((uintptr_t)virt / PAGE_SIZE) * 8;
	ssize_t n = pread(fd, &entry, sizeof entry, off);
	close(fd);
	if (n != sizeof entry || !(entry & (1ull << 63)))
		return 0;
	return (entry & ((1ull << 55) - 1)) * PAGE_SIZE;
}

static void mem_setup(void)
{
	struct sysinfo si;
	if (sysinfo(&si) == 0) {
		uint64_t total_mib = (uint64_t)si.totalram * si.mem_unit >> 20;
		/* Leave room for the kernel, the initramfs and the page cache. */
		uint64_t room = total_mib > 96 ? total_mib - 64 : 32;
		if (p.mem_mib > room) {
			say("vmferry-guest warning: vmf.mem=%" PRIu32 " does not fit in %" PRIu64
			    " MiB of RAM, clamped to vmf.mem=%" PRIu64,
			    p.mem_mib, total_mib, room);
			p.mem_mib = (uint32_t)room;
		}
	}
	pages = p.mem_mib * (1048576u / PAGE_SIZE);
	size_t bytes = (size_t)pages * PAGE_SIZE;
	region = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mem_gen = calloc(pages, sizeof *mem_gen);
	if (region == MAP_FAILED || mem_gen == NULL) {
		say("vmferry-guest error: cannot allocate vmf.mem=%" PRIu32 " MiB: %s", p.mem_mib, strerror(errno));
		exit(1);
	}
	/* 4 KiB pages that stay where they are: their physical addresses are printed below. */
	madvise(region, bytes, MADV_NOHUGEPAGE);
	if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
		say("vmferry-guest warning: mlockall: %s", strerror(errno));
	for (uint32_t i = 0; i < pages; i++)
		page_fill(region + (size_t)i * WORDS_PER_PAGE, page_seed(i, 0));
	mem_write_stride = spread_stride(pages);
}

static void mem_rewrite(void)
{
	uint32_t i = mem_write_pos;
	mem_write_pos = (mem_write_pos + mem_write_stride) % pages;
	uint32_t g = ++mem_gen[i];
	page_fill(region + (size_t)i * WORDS_PER_PAGE, page_seed(i, g));
	mem_written++;
}

static void mem_verify(void)
{
	uint32_t i = mem_verify_pos;
	mem_verify_pos = (mem_verify_pos + 1) % pages;
	const uint32_t *words = region + (size_t)i * WORDS_PER_PAGE;
	uint32_t seed = page_seed(i, mem_gen[i]);
	mem_verified++;
	if (page_check(words, seed) == 0)
		return;
	if (!mem_corrupt) {
		mem_corrupt = 1;
		mem_corrupt_page = i;
	}
	if (mem_reports < MAX_MISMATCH_REPORTS) {
		mem_reports++;
		uint32_t expected;
		uint32_t w = page_first_bad_word(words, seed, &expected);
		say("vmferry-guest mismatch page=%" PRIu32 " generation=%" PRIu32 " word=%" PRIu32
		    " expected=0x%08" PRIx32 " found=0x%08" PRIx32 " phys=0x%" PRIx64,
		    i, mem_gen[i], w, expected, w < WORDS_PER_PAGE ? words[w] : 0, phys_addr(words));
	}
}

/* ---- disk ---- */

enum disk_state { DISK_OK, DISK_CORRUPT, DISK_ERROR };
static const char *const disk_state_name[] = { "OK", "CORRUPT", "ERROR" };

static int disk_fd = -1;
static uint32_t blocks;
static uint32_t *disk_gen;
static uint32_t *io_buf; /* DISK_IO_BLOCKS blocks, aligned for O_DIRECT */
static uint32_t *expect_buf; /* one block */
static uint32_t disk_write_pos, disk_write_stride, disk_verify_pos;
static uint64_t disk_written, disk_verified, disk_passes;
static enum disk_state disk_state = DISK_OK;
static uint32_t disk_corrupt_block;
static uint32_t disk_reports;

static void block_fill(uint32_t *words, uint32_t block, uint32_t generation)
{
	page_fill(words, page_seed(block, generation));
	words[0] = BLOCK_MAGIC;
	words[1] = block;
	words[2] = generation;
	words[3] = ~(block ^ generation);
}

static void disk_error(const char *what, uint32_t block, int err)
{
	if (disk_state == DISK_OK)
		disk_state = DISK_ERROR;
	if (disk_reports < MAX_MISMATCH_REPORTS) {
		disk_reports++;
		say("vmferry-guest error: disk %s block=%" PRIu32 ": %s", what, block, strerror(err));
	}
}

static int disk_io(int write_, uint32_t first, uint32_t count)
{
	size_t len = (size_t)count * PAGE_SIZE;
	off_t off = (off_t)first * PAGE_SIZE;
	ssize_t n = write_ ? pwrite(disk_fd, io_buf, len, off) : pread(disk_fd, io_buf, len, off);
	if (n == (ssize_t)len)
		return 0;
	disk_error(write_ ? "write" : "read", first, n < 0 ? errno : EIO);
	return -1;
}

static void disk_setup(void)
{
	if (p.disk == NULL)
		return;
	/* virtio_blk's disks appear a moment after the module loads; /init waits too. */
	for (int tries = 0; tries < 100; tries++) {
		disk_fd = open(p.disk, O_RDWR | O_DIRECT | O_CLOEXEC);
		if (disk_fd >= 0 || errno != ENOENT)
			break;
		usleep(50000);
	}
	if (disk_fd < 0) {
		say("vmferry-guest error: cannot open vmf.disk=%s: %s", p.disk, strerror(errno));
		exit(1);
	}
	uint64_t size = 0;
	if (ioctl(disk_fd, BLKGETSIZE64, &size) != 0) {
		say("vmferry-guest error: vmf.disk=%s is not a block device: %s", p.disk, strerror(errno));
		exit(1);
	}
	uint64_t want = p.disk_mib != 0 ? (uint64_t)p.disk_mib << 20 : (uint64_t)DISK_DEFAULT_MAX_MIB << 20;
	if (p.disk_mib != 0 && want > size)
		say("vmferry-guest warning: vmf.diskmib=%" PRIu32 " is more than %s holds (%" PRIu64
		    " bytes), using all of it",
		    p.disk_mib, p.disk, size);
	if (want > size)
		want = size;
	blocks = (uint32_t)(want / PAGE_SIZE);
	if (blocks == 0) {
		say("vmferry-guest error: vmf.disk=%s is smaller than one block", p.disk);
		exit(1);
	}
	disk_gen = calloc(blocks, sizeof *disk_gen);
	if (disk_gen == NULL || posix_memalign((void **)&io_buf, PAGE_SIZE, DISK_IO_BLOCKS * PAGE_SIZE) != 0 ||
	    posix_memalign((void **)&expect_buf, PAGE_SIZE, PAGE_SIZE) != 0) {
		say("vmferry-guest error: out of memory for the disk check");
		exit(1);
	}
	/* Filled by the host: every block already holds generation 0, which the checks expect. */
	for (uint32_t b = 0; !p.disk_fill_host && b < blocks; b += DISK_IO_BLOCKS) {
		uint32_t n = blocks - b < DISK_IO_BLOCKS ? blocks - b : DISK_IO_BLOCKS;
		for (uint32_t k = 0; k < n; k++)
			block_fill(io_buf + (size_t)k * WORDS_PER_PAGE, b + k, 0);
		if (disk_io(1, b, n) != 0)
			break;
	}
	if (!p.disk_fill_host && fdatasync(disk_fd) != 0)
		disk_error("flush", 0, errno);
	disk_write_stride = spread_stride(blocks);
}

static void disk_rewrite(void)
{
	uint32_t b = disk_write_pos;
	disk_write_pos = (disk_write_pos + disk_write_stride) % blocks;
	uint32_t g = disk_gen[b] + 1;
	block_fill(io_buf, b, g);
	/* The generation moves on only once the device has the block; a failed write changes nothing. */
	if (disk_io(1, b, 1) == 0) {
		disk_gen[b] = g;
		disk_written++;
	}
}

static void disk_check_block(uint32_t b, const uint32_t *words)
{
	block_fill(expect_buf, b, disk_gen[b]);
	disk_verified++;
	if (memcmp(words, expect_buf, PAGE_SIZE) == 0)
		return;
	if (disk_state != DISK_CORRUPT) {
		disk_state = DISK_CORRUPT;
		disk_corrupt_block = b;
	}
	if (disk_reports < MAX_MISMATCH_REPORTS) {
		disk_reports++;
		uint32_t w = 0;
		while (w < WORDS_PER_PAGE && words[w] == expect_buf[w])
			w++;
		say("vmferry-guest mismatch block=%" PRIu32 " generation=%" PRIu32 " word=%" PRIu32
		    " expected=0x%08" PRIx32 " found=0x%08" PRIx32 " header=0x%08" PRIx32 ",%" PRIu32 ",%" PRIu32,
		    b, disk_gen[b], w, expect_buf[w], words[w], words[0], words[1], words[2]);
	}
}

static void disk_verify(uint32_t count)
{
	uint32_t b = disk_verify_pos;
	if (count > blocks - b)
		count = blocks - b;
	if (disk_io(0, b, count) == 0)
		for (uint32_t k = 0; k < count; k++)
			disk_check_block(b + k, io_buf + (size_t)k * WORDS_PER_PAGE);
	disk_verify_pos = (b + count) % blocks;
	/* Every block read back and checked once more (a failed read still ends the pass: ERROR says it). */
	if (disk_verify_pos == 0)
		disk_passes++;
}

/* ---- network: ICMP echo to the peer once a second ---- */

static int icmp_fd = -1;
static struct sockaddr_in peer_addr;
static uint16_t echo_id, echo_seq;
static int64_t last_reply_ns = -1;
static uint64_t pings_sent, replies;

static uint16_t inet_checksum(const void *data, size_t len)
{
	const uint8_t *b = data;
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (len & 1)
		sum += (uint32_t)b[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static void net_setup(void)
{
	if (p.peer == NULL)
		return;
	icmp_fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (icmp_fd < 0) {
		say("vmferry-guest error: raw ICMP socket: %s", strerror(errno));
		exit(1);
	}
	peer_addr.sin_family = AF_INET;
	inet_pton(AF_INET, p.peer, &peer_addr.sin_addr);
	echo_id = (uint16_t)getpid();
}

static void net_ping(void)
{
	struct {
		struct icmphdr h;
		char payload[24];
	} pkt;
	memset(&pkt, 0, sizeof pkt);
	pkt.h.type = ICMP_ECHO;
	pkt.h.un.echo.id = htons(echo_id);
	pkt.h.un.echo.sequence = htons(++echo_seq);
	memcpy(pkt.payload, "vmferry-guest ping", 18);
	pkt.h.checksum = inet_checksum(&pkt, sizeof pkt);
	/* No route yet or a full queue: the missing reply says it. */
	if (sendto(icmp_fd, &pkt, sizeof pkt, 0, (struct sockaddr *)&peer_addr, sizeof peer_addr) > 0)
		pings_sent++;
}

static void net_receive(int64_t now)
{
	uint8_t buf[1500];
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(icmp_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
		if (n <= 0)
			return;
		const struct iphdr *ip = (const struct iphdr *)buf;
		size_t hl = (size_t)ip->ihl * 4;
		if ((size_t)n < hl + sizeof(struct icmphdr))
			continue;
		const struct icmphdr *h = (const struct icmphdr *)(buf + hl);
		if (h->type == ICMP_ECHOREPLY && ntohs(h->un.echo.id) == echo_id &&
		    from.sin_addr.s_addr == peer_addr.sin_addr.s_addr) {
			replies++;
			last_reply_ns = now;
		}
	}
}

/* ---- heartbeat ---- */

static uint64_t seq;

static void heartbeat(int64_t now)
{
	char mem_part[64], disk_part[192] = "", net_part[16] = "";
	int corrupt = mem_corrupt || disk_state == DISK_CORRUPT;
	/* page= right after status=CORRUPT: what the freestanding guest prints, so older parsers read it too. */
	if (mem_corrupt)
		snprintf(mem_part, sizeof mem_part, " page=%" PRIu32 " mem=CORRUPT", mem_corrupt_page);
	else
		snprintf(mem_part, sizeof mem_part, " mem=OK");
	if (disk_fd >= 0) {
		char block_part[24] = "";
		if (disk_state == DISK_CORRUPT)
			snprintf(block_part, sizeof block_part, " block=%" PRIu32, disk_corrupt_block);
		snprintf(disk_part, sizeof disk_part,
			 " disk=%s%s disk_written=%" PRIu64 " disk_verified=%" PRIu64 " disk_passes=%" PRIu64,
			 disk_state_name[disk_state], block_part, disk_written, disk_verified, disk_passes);
	}
	if (icmp_fd >= 0) {
		int up = last_reply_ns >= 0 && now - last_reply_ns < NET_DOWN_AFTER_NS;
		snprintf(net_part, sizeof net_part, " net=%s", up ? "OK" : "DOWN");
	}
	say("vmferry-hb seq=%" PRIu64 " written=%" PRIu64 " verified=%" PRIu64 " status=%s%s%s%s", ++seq,
	    mem_written, mem_verified, corrupt ? "CORRUPT" : "OK", mem_part, disk_part, net_part);
}

int main(void)
{
	static char cmdline[4096];
	int fd = open("/proc/cmdline", O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
		cmdline[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	parse_cmdline(cmdline);

	say("vmferry-guest filling mem=%" PRIu32 " disk=%s peer=%s", p.mem_mib, p.disk ? p.disk : "none",
	    p.peer ? p.peer : "none");
	int64_t t0 = now_ns();
	mem_setup();
	disk_setup();
	net_setup();
	/* Where some workload pages are in guest-physical memory: a test can corrupt them from outside. */
	for (uint32_t k = 0; k < PHYS_PROBES; k++) {
		uint32_t i = (uint32_t)((uint64_t)pages * k / PHYS_PROBES);
		say("vmferry-guest phys page=%" PRIu32 " addr=0x%" PRIx64, i,
		    phys_addr(region + (size_t)i * WORDS_PER_PAGE));
	}
	int64_t now = now_ns();
	say("vmferry-guest started mem=%" PRIu32 " pages=%" PRIu32 " dirty=%" PRIu32 " disk=%s blocks=%" PRIu32
	    " diskdirty=%" PRIu32 " diskfill=%s peer=%s fill_ms=%" PRId64,
	    p.mem_mib, pages, p.dirty_mibps, p.disk ? p.disk : "none", blocks, p.disk_dirty,
	    p.disk_fill_host ? "host" : "guest", p.peer ? p.peer : "none", (now - t0) / 1000000);

	const uint32_t pages_per_mib = 1048576u / PAGE_SIZE;
	struct pace mem_w = { p.dirty_mibps * pages_per_mib, now, 0 };
	struct pace mem_v = { p.verify_mibps == RATE_MAX ? RATE_MAX : p.verify_mibps * pages_per_mib, now, 0 };
	struct pace disk_w = { disk_fd >= 0 ? p.disk_dirty : 0, now, 0 };
	struct pace disk_v = { disk_fd >= 0 ? p.disk_verify : 0, now, 0 };
	int64_t next_hb = now + NS_PER_S, next_ping = now;

	for (;;) {
		now = now_ns();
		pace_refill(&mem_w, now);
		pace_refill(&mem_v, now);
		pace_refill(&disk_w, now);
		pace_refill(&disk_v, now);

		for (uint32_t k = 0; k < MAX_WRITE_BURST && mem_w.per_s != 0 && pace_take(&mem_w); k++)
			mem_rewrite();
		for (uint32_t k = 0; k < VERIFY_CHUNK_PAGES && pace_take(&mem_v); k++)
			mem_verify();
		if (disk_fd >= 0) {
			if (disk_w.per_s != 0 && pace_take(&disk_w))
				disk_rewrite();
			uint32_t due = 0;
			while (due < DISK_IO_BLOCKS && pace_take(&disk_v))
				due++;
			if (due > 0)
				disk_verify(due);
		}
		if (icmp_fd >= 0) {
			net_receive(now);
			if (now >= next_ping) {
				net_ping();
				next_ping = now + NS_PER_S;
			}
		}
		if (now >= next_hb) {
			heartbeat(now);
			/* After a pause (migration, host stall) start a fresh second instead of a burst. */
			next_hb = now - next_hb > NS_PER_S ? now + NS_PER_S : next_hb + NS_PER_S;
		}

		int64_t wait = next_hb - now;
		const struct pace *paced[] = { &mem_w, &mem_v, &disk_w, &disk_v };
		for (int k = 0; k < 4; k++) {
			int64_t w = pace_wait_ns(paced[k]);
			if (w < wait)
				wait = w;
		}
		if (icmp_fd >= 0 && next_ping - now < wait)
			wait = next_ping - now;
		if (wait > 0) {
			/* Sleeps, and wakes early for a ping reply. */
			struct pollfd pfd = { .fd = icmp_fd, .events = POLLIN };
			struct timespec ts = { wait / NS_PER_S, wait % NS_PER_S };
			ppoll(&pfd, icmp_fd >= 0 ? 1 : 0, &ts, NULL);
		}
	}
}
