#ifndef VMFERRY_PATTERN_H
#define VMFERRY_PATTERN_H

#include <stdint.h>

/*
 * Page content. Page p at write generation g holds 1024 little-endian uint32
 * words: a xorshift32 stream (13, 17, 5) seeded with page_seed(p, g), the
 * first word being the first step after the seed. Words are never zero. The
 * host mirrors this in src/guest/pattern.ts.
 */
uint32_t page_seed(uint32_t page, uint32_t generation);
void page_fill(uint32_t *words, uint32_t seed);
/* Zero when the page holds exactly the stream of `seed`. */
uint32_t page_check(const volatile uint32_t *words, uint32_t seed);
/* Index of the first word that differs (for the diagnostic line). */
uint32_t page_first_bad_word(const volatile uint32_t *words, uint32_t seed, uint32_t *expected);

#endif
