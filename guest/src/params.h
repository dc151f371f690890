#ifndef VMFERRY_PARAMS_H
#define VMFERRY_PARAMS_H

#include <stdint.h>

#define DEFAULT_MEM_MIB 64u
#define DEFAULT_DIRTY_MIBPS 0u
#define MAX_RATE_MIBPS 1048576u

struct params {
	uint32_t mem_mib;
	uint32_t dirty_mibps;	/* 0 = no rewriting */
	uint32_t verify_mibps;	/* 0 = as fast as possible ("max") */
};

/* Parses `mem=<MiB> dirty=<MiB/s> verify=<MiB/s|max>`; prints a warning line
 * for anything it does not understand and keeps the default for it. */
void params_parse(const char *cmdline, struct params *out);

#endif
