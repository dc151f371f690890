/* COM1 output, polled: the guest never takes serial interrupts. */
#include "console.h"
#include "io.h"

#define COM1 0x3f8

void console_init(void)
{
	outb(COM1 + 1, 0x00);	/* no interrupts */
	outb(COM1 + 3, 0x80);	/* DLAB on */
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8N1 */
	outb(COM1 + 2, 0xc7);	/* FIFO on, cleared */
	outb(COM1 + 4, 0x03);	/* DTR, RTS */
}

void put_char(char c)
{
	for (int spin = 0; spin < 100000; spin++)
		if (inb(COM1 + 5) & 0x20)
			break;
	outb(COM1, (uint8_t)c);
}

void put_str(const char *s)
{
	while (*s)
		put_char(*s++);
}

/* Decimal without 64-bit division: libgcc is not available for -m32 here. */
void put_u64(uint64_t v)
{
	static const uint64_t pow10[] = {
		10000000000000000000ull, 1000000000000000000ull, 100000000000000000ull,
		10000000000000000ull, 1000000000000000ull, 100000000000000ull,
		10000000000000ull, 1000000000000ull, 100000000000ull, 10000000000ull,
		1000000000ull, 100000000ull, 10000000ull, 1000000ull, 100000ull,
		10000ull, 1000ull, 100ull, 10ull, 1ull,
	};
	int started = 0;
	for (unsigned i = 0; i < sizeof pow10 / sizeof pow10[0]; i++) {
		char d = '0';
		while (v >= pow10[i]) {
			v -= pow10[i];
			d++;
		}
		if (d != '0' || started || pow10[i] == 1) {
			put_char(d);
			started = 1;
		}
	}
}

void put_hex(uint32_t v)
{
	static const char digits[] = "0123456789abcdef";
	int shift = 28;
	while (shift > 0 && ((v >> shift) & 0xf) == 0)
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		put_char(digits[(v >> shift) & 0xf]);
}
