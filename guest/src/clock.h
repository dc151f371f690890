#ifndef VMFERRY_CLOCK_H
#define VMFERRY_CLOCK_H

#include <stdint.h>

/* The clock counts PIT input ticks. */
#define CLOCK_HZ 1193182u

void clock_init(void);
/* Must be called at least every ~27 ms; longer gaps are bridged with the TSC. */
uint64_t clock_now(void);

#endif
