/*
 * fuzz_dns_answer.c - libFuzzer target for tern-smtp's DNS answer parser
 * (dns_parse in src/smtp/dns.c): DNS packets come from the network. The
 * first byte picks the record type asked for.
 */
#include "autoconfig.h"

#include <arpa/nameser.h>
#include <stdint.h>
#include <string.h>

#include "smtp.h"

struct agent agent;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int types[] = { ns_t_mx, ns_t_a, ns_t_aaaa };
	struct dns_answer a;

	if (size == 0)
		return 0;
	memset(&a, 0, sizeof(a));
	(void)dns_parse(data + 1, size - 1, types[data[0] % 3], &a);
	for (size_t i = 0; i < a.n_rrs; i++)
		if (strlen(a.rrs[i].name) >= sizeof(a.rrs[i].name))
			__builtin_trap();
	dns_answer_clear(&a);
	return 0;
}
