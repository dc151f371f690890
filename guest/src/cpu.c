#include "cpu.h"
#include "console.h"
#include "io.h"

struct idt_gate {
	uint16_t offset_lo;
	uint16_t selector;
	uint8_t zero;
	uint8_t type;
	uint16_t offset_hi;
} __attribute__((packed));

extern const uint32_t exc_stubs[32];
extern void irq_timer_stub(void);
extern void irq_other_stub(void);
extern void irq_ignore_stub(void);

static struct idt_gate idt[256] __attribute__((aligned(8)));

static void set_gate(unsigned v, uint32_t handler)
{
	idt[v].offset_lo = (uint16_t)handler;
	idt[v].selector = 0x08;
	idt[v].zero = 0;
	idt[v].type = 0x8e;	/* present, ring 0, 32-bit interrupt gate */
	idt[v].offset_hi = (uint16_t)(handler >> 16);
}

static void pic_init(void)
{
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 0x20);	/* master at vectors 0x20-0x27 */
	outb(0xa1, 0x28);	/* slave at 0x28-0x2f */
	outb(0x21, 0x04);
	outb(0xa1, 0x02);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xfe);	/* only IRQ0 */
	outb(0xa1, 0xff);
}

void cpu_init(void)
{
	for (unsigned v = 0; v < 256; v++)
		set_gate(v, (uint32_t)irq_ignore_stub);
	for (unsigned v = 0; v < 32; v++)
		set_gate(v, exc_stubs[v]);
	set_gate(0x20, (uint32_t)irq_timer_stub);
	for (unsigned v = 0x21; v < 0x30; v++)
		set_gate(v, (uint32_t)irq_other_stub);
	set_gate(0x27, (uint32_t)irq_ignore_stub);

	struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) idtr = { sizeof idt - 1, (uint32_t)idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));
	pic_init();
}

void wait_for_tick(void)
{
	/* sti's one-instruction shadow makes sti;hlt atomic: no lost wake-up. */
	__asm__ volatile("sti; hlt; cli" ::: "memory");
}

void guest_fault(const uint32_t *frame);

void guest_fault(const uint32_t *frame)
{
	uint32_t vector = frame[0];
	int has_error = vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 ||
			vector == 21 || vector == 29 || vector == 30;
	put_str("vmferry-guest fault vector=");
	put_u64(vector);
	if (has_error) {
		put_str(" error=0x");
		put_hex(frame[1]);
	}
	put_str(" eip=0x");
	put_hex(frame[has_error ? 2 : 1]);
	put_str("\n");
	halt_forever();
}
