/*
 * fuzz_verp.c - libFuzzer target for the VERP decoder: any recipient
 * address at a return path domain reaches it. Nothing may crash, and an
 * address it accepts must be exactly one it would have made (case aside).
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"
#include "verp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[VERP_KEY_LEN] = { 1, 2, 3 };
	char *addr = xstrndup((const char *)data, size);
	uint64_t qid;
	uint32_t rcpt;

	if (verp_decode(key, addr, &qid, &rcpt) == 0) {
		char again[600];
		const char *at = strrchr(addr, '@');
		char *domain = xstrdup(at + 1);
		size_t dl = strlen(domain);

		if (dl > 0 && domain[dl - 1] == '>')
			domain[dl - 1] = '\0';
		if (verp_encode(key, qid, rcpt, domain, again, sizeof(again)) != 0)
			abort();
		if (strncasecmp(again, addr[0] == '<' ? addr + 1 : addr,
		    strlen(again)) != 0)
			abort();
		free(domain);
	}
	free(addr);
	return 0;
}
