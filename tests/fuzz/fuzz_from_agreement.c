/*
 * fuzz_from_agreement.c - libFuzzer target that holds tern-smtpd and
 * tern-cleanup to one reading of a From: field. tern-smtpd lets a
 * submission through only when every From: mailbox is in a domain of
 * ours (header_from.c); tern-cleanup then picks the domain whose DKIM key
 * signs the message (header.c). Should the two parsers disagree, a From:
 * smtpd accepted would be signed for, or shown as, another domain: the
 * target traps when cleanup reads a domain other than the one smtpd
 * checked. (It found the quoted ':' of a source route, e52b57a.)
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "header.h"
#include "header_from.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
is_ours(const char *domain, void *arg)
{
	(void)arg;
	return strcasecmp(domain, "example.test") == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char field[1100], bad[128], domain[256];
	char *value;

	/* One unfolded field line. */
	if (size > 1000 || memchr(data, '\0', size) != NULL ||
	    memchr(data, '\r', size) != NULL || memchr(data, '\n', size) != NULL)
		return 0;
	memcpy(field, "From:", 5);
	memcpy(field + 5, data, size);
	memcpy(field + 5 + size, "\r\n", 3);
	if (header_check_from(field, size + 7, is_ours, NULL, bad,
	    sizeof(bad)) != 0)
		return 0;		/* smtpd refuses it: nothing to agree on */
	value = strndup((const char *)data, size);
	if (value == NULL)
		abort();
	if (header_mailbox_count(value) > 0 &&
	    header_mailbox_domain(value, domain, sizeof(domain)) == 0 &&
	    strcasecmp(domain, "example.test") != 0)
		__builtin_trap();
	free(value);
	return 0;
}
