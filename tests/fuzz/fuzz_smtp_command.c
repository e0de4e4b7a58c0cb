/*
 * fuzz_smtp_command.c - libFuzzer target for tern-smtpd's command line
 * parsing: the verb split, MAIL and RCPT with every ESMTP parameter
 * (xtext included), the AUTH base64 decoder and the From: header check
 * (the input read as a header block). Nothing may crash, read
 * out of bounds, and an accepted parameter may never carry CR or LF.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/smtpd/header_from.h"
#include "../../src/smtpd/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
is_ours(const char *domain, void *arg)
{
	(void)arg;
	return strcmp(domain, "example.test") == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line, *verb, *args;
	struct smtp_mail m;
	struct smtp_rcpt r;
	unsigned char b64[1024];
	const char *reply;

	char bad[128];

	if (size > 4096)
		return 0;
	header_check_from((const char *)data, size, is_ours, NULL, bad,
	    sizeof(bad));
	line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';
	if (smtp_split_command(line, &verb, &args) == 0) {
		if (smtp_parse_mail(args, &m, &reply) == 0 &&
		    (strpbrk(m.envid, "\r\n") != NULL ||
		    strpbrk(m.sender, "\r\n") != NULL))
			__builtin_trap();
		if (smtp_parse_rcpt(args, size & 1, &r, &reply) == 0 &&
		    (strpbrk(r.orcpt, "\r\n") != NULL ||
		    strpbrk(r.address, "\r\n") != NULL))
			__builtin_trap();
		if (strlen(args) < 1300)
			smtp_base64_decode(args, b64, sizeof(b64));
	}
	free(line);
	return 0;
}
