/*
 * Time from the 8254 PIT. Channel 2 runs free in mode 2 over the full 16-bit
 * range (one wrap per 54.9 ms) and is polled; channel 0 ticks at 1 kHz only to
 * wake the CPU from hlt. Under TCG the PIT follows QEMU's virtual clock, which
 * tracks host time while the VM runs and stops while it is paused, and it is
 * migrated with the VM. If the vCPU is descheduled for longer than a wrap the
 * PIT alone would lose time, so the TSC (calibrated against the PIT at boot)
 * counts the whole wraps that went by unseen.
 */
#include "clock.h"
#include "io.h"

#define WAKE_HZ 1000u

static uint16_t last_count;
static uint64_t last_tsc;
static uint64_t ticks;
static uint32_t tsc_per_wrap;	/* TSC ticks per 65536 PIT ticks; 0 = unknown */

static uint16_t pit2_read(void)
{
	outb(0x43, 0x80);	/* latch channel 2 */
	uint8_t lo = inb(0x42);
	uint8_t hi = inb(0x42);
	return (uint16_t)(lo | (hi << 8));
}

static uint32_t missed_wraps(uint64_t dt, uint32_t seen)
{
	uint64_t w = tsc_per_wrap;
	uint64_t seen_tsc = ((uint64_t)seen * tsc_per_wrap) >> 16;
	if (dt <= seen_tsc)
		return 0;
	uint64_t rest = dt - seen_tsc + w / 2;
	uint32_t k = 0;
	while (rest >= w && k < 1000) {
		rest -= w;
		k++;
	}
	return k;
}

uint64_t clock_now(void)
{
	uint16_t c = pit2_read();
	uint64_t t = rdtsc();
	uint32_t d = (uint16_t)(last_count - c);
	if (tsc_per_wrap != 0) {
		uint64_t dt = t - last_tsc;
		if (dt > tsc_per_wrap / 2)
			d += missed_wraps(dt, d) << 16;
	}
	last_count = c;
	last_tsc = t;
	ticks += d;
	return ticks;
}

void clock_init(void)
{
	outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));	/* ch2 gate on, speaker off */
	outb(0x43, 0xb4);	/* ch2, lo/hi, mode 2, binary */
	outb(0x42, 0);
	outb(0x42, 0);	/* reload 65536 */
	outb(0x43, 0x34);	/* ch0, lo/hi, mode 2, binary */
	outb(0x40, (uint8_t)((CLOCK_HZ / WAKE_HZ) & 0xff));
	outb(0x40, (uint8_t)((CLOCK_HZ / WAKE_HZ) >> 8));

	last_count = pit2_read();
	last_tsc = rdtsc();
	uint64_t start = clock_now();
	uint64_t tsc0 = rdtsc();
	while (clock_now() - start < 65536)
		;
	uint64_t span = rdtsc() - tsc0;
	tsc_per_wrap = span > 0xffffffffull ? 0 : (uint32_t)span;
	last_tsc = rdtsc();
}
