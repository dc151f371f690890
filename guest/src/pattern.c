#include "pattern.h"
#include "layout.h"

static uint64_t splitmix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint32_t page_seed(uint32_t page, uint32_t generation)
{
	uint64_t h = splitmix64(((uint64_t)page << 32) | generation);
	uint32_t s = (uint32_t)h ^ (uint32_t)(h >> 32);
	return s != 0 ? s : 0x6d2b79f5u;
}

#define STEP(s) ((s) ^= (s) << 13, (s) ^= (s) >> 17, (s) ^= (s) << 5)

void page_fill(uint32_t *words, uint32_t s)
{
	for (uint32_t i = 0; i < WORDS_PER_PAGE; i += 4) {
		STEP(s);
		words[i] = s;
		STEP(s);
		words[i + 1] = s;
		STEP(s);
		words[i + 2] = s;
		STEP(s);
		words[i + 3] = s;
	}
}

uint32_t page_check(const volatile uint32_t *words, uint32_t s)
{
	uint32_t diff = 0;
	for (uint32_t i = 0; i < WORDS_PER_PAGE; i += 4) {
		STEP(s);
		diff |= words[i] ^ s;
		STEP(s);
		diff |= words[i + 1] ^ s;
		STEP(s);
		diff |= words[i + 2] ^ s;
		STEP(s);
		diff |= words[i + 3] ^ s;
	}
	return diff;
}

uint32_t page_first_bad_word(const volatile uint32_t *words, uint32_t s, uint32_t *expected)
{
	for (uint32_t i = 0; i < WORDS_PER_PAGE; i++) {
		STEP(s);
		if (words[i] != s) {
			*expected = s;
			return i;
		}
	}
	*expected = 0;
	return WORDS_PER_PAGE;
}
