#include "params.h"
#include "console.h"

static int parse_u32(const char *s, uint32_t len, uint32_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 10)
		return 0;
	for (uint32_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	if (v > 0xffffffffull)
		return 0;
	*out = (uint32_t)v;
	return 1;
}

static int key_is(const char *s, uint32_t len, const char *key)
{
	uint32_t i = 0;
	for (; i < len && key[i]; i++)
		if (s[i] != key[i])
			return 0;
	return i == len && key[i] == 0;
}

static void warn_token(const char *what, const char *s, uint32_t len)
{
	put_str("vmferry-guest warning: ");
	put_str(what);
	put_str(" '");
	for (uint32_t i = 0; i < len; i++)
		put_char(s[i]);
	put_str("' ignored\n");
}

void params_parse(const char *cmdline, struct params *out)
{
	out->mem_mib = DEFAULT_MEM_MIB;
	out->dirty_mibps = DEFAULT_DIRTY_MIBPS;
	out->verify_mibps = 0;
	if (!cmdline)
		return;

	/* QEMU and GRUB put the kernel path first; it is not a parameter. */
	int first = 1;
	const char *p = cmdline;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		const char *tok = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		uint32_t len = (uint32_t)(p - tok);
		uint32_t eq = 0;
		while (eq < len && tok[eq] != '=')
			eq++;
		int was_first = first;
		first = 0;
		if (eq == len)
			continue;
		const char *val = tok + eq + 1;
		uint32_t vlen = len - eq - 1;
		uint32_t v;
		if (key_is(tok, eq, "mem")) {
			if (parse_u32(val, vlen, &v) && v > 0)
				out->mem_mib = v;
			else
				warn_token("bad value", tok, len);
		} else if (key_is(tok, eq, "dirty")) {
			if (parse_u32(val, vlen, &v) && v <= MAX_RATE_MIBPS)
				out->dirty_mibps = v;
			else
				warn_token("bad value", tok, len);
		} else if (key_is(tok, eq, "verify")) {
			if (key_is(val, vlen, "max"))
				out->verify_mibps = 0;
			else if (parse_u32(val, vlen, &v) && v > 0 && v <= MAX_RATE_MIBPS)
				out->verify_mibps = v;
			else
				warn_token("bad value", tok, len);
		} else if (!was_first) {
			warn_token("unknown parameter", tok, len);
		}
	}
}
