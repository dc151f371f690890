#ifndef VMFERRY_CPU_H
#define VMFERRY_CPU_H

#include <stdint.h>

/* IDT and PIC: exceptions are reported and stop the guest; only IRQ0 is unmasked. */
void cpu_init(void);
/* Sleeps until the next interrupt (at most one 1 kHz tick). */
void wait_for_tick(void);

#endif
