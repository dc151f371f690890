#ifndef VMFERRY_CONSOLE_H
#define VMFERRY_CONSOLE_H

#include <stdint.h>

void console_init(void);
void put_char(char c);
void put_str(const char *s);
void put_u64(uint64_t v);
void put_hex(uint32_t v);

#endif
