/*
 * fuzz_smtp_reply.c - libFuzzer target for the SMTP reply parser of
 * tern-smtp: the input is a server's byte stream, fed in pieces whose
 * sizes come from the input itself. Nothing may crash, read or write out
 * of bounds, or break the record's invariants.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	size_t off = 0, step;

	if (size == 0)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	smtp_reply_parser_reset(&p);
	while (off < size) {
		size_t n = size - off < step ? size - off : step, used = 0;
		enum smtp_reply_result r;

		r = smtp_reply_feed(&p, (const char *)data + off, n, &used);
		if (used == 0 || used > n)
			abort();
		off += used;
		if (r == SMTP_REPLY_MORE)
			continue;
		if (p.reply.text_len > SMTP_REPLY_TEXT_MAX ||
		    strlen(p.reply.text) != p.reply.text_len)
			abort();
		if (r == SMTP_REPLY_DONE && (p.reply.code < 200 ||
		    p.reply.code > 599 || p.reply.why != NULL))
			abort();
		if (r == SMTP_REPLY_BAD && (p.reply.code != 0 || p.reply.why == NULL))
			abort();
		smtp_reply_parser_reset(&p);
	}
	return 0;
}
