/*
 * fuzz_smtp_address.c - libFuzzer target for tern-smtpd's RFC 5321 path
 * parser: the first byte picks the flags (null path, bare postmaster,
 * UTF-8). An accepted address must fit its limit, hold no control
 * characters, and parse again to itself (the parser is idempotent).
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/smtpd/smtp_address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[SMTP_ADDRESS_MAX + 1], again[SMTP_ADDRESS_MAX + 1], *in;
	const char *end, *why;
	unsigned flags;

	if (size < 1 || size > 2048)
		return 0;
	flags = data[0] & 7;
	in = malloc(size);
	memcpy(in, data + 1, size - 1);
	in[size - 1] = '\0';
	if (smtp_path_parse(in, flags, out, sizeof(out), &end, &why) == 0) {
		if (strlen(out) > SMTP_ADDRESS_MAX || end < in || end > in + size)
			__builtin_trap();
		for (const char *p = out; *p != '\0'; p++)
			if ((unsigned char)*p < 32 || *p == 127)
				__builtin_trap();
		if (*out != '\0' && smtp_mailbox_parse(out, strlen(out), flags,
		    again, sizeof(again), &why) == 0 && strcmp(out, again) != 0)
			__builtin_trap();
		is_smtp_relay_trick(out);
		smtp_address_domain(out);
	}
	free(in);
	return 0;
}
