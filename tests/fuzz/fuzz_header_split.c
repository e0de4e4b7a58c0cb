/*
 * fuzz_header_split.c - libFuzzer target for tern-signer's streaming
 * header splitter, which sees message content from submitters: the first
 * input byte picks the chunk size, the rest is the message. Nothing may
 * crash, and every field handed on must fit the limit and never contain a
 * bare CR or LF; the body pieces, joined, have CRLF line ends only.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "header_split.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_FIELD	512

static int
check_field(void *arg, const char *field, size_t len)
{
	(void)arg;
	if (len > FUZZ_MAX_FIELD)
		abort();
	for (size_t i = 0; i < len; i++)
		if ((field[i] == '\r' && (i + 1 == len || field[i + 1] != '\n')) ||
		    (field[i] == '\n' && (i == 0 || field[i - 1] != '\r')))
			abort();
	return 0;
}

struct state {
	int eoh;
	bool cr;		/* the last body byte was a CR */
};

static int
check_eoh(void *arg)
{
	struct state *st = arg;

	if (++st->eoh != 1)
		abort();
	return 0;
}

static int
check_body(void *arg, const char *buf, size_t len)
{
	struct state *st = arg;

	if (st->eoh != 1 || len == 0)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (st->cr != (buf[i] == '\n'))
			abort();
		st->cr = buf[i] == '\r';
	}
	return 0;
}

static const struct header_split_ops ops = { check_field, check_eoh, check_body };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct header_split hs;
	struct state st = { 0, false };
	size_t step;
	int rc = 0;

	if (size == 0)
		return 0;
	step = data[0] % 64 + 1;
	data++;
	size--;
	header_split_init(&hs, &ops, &st, FUZZ_MAX_FIELD);
	for (size_t off = 0; off < size && rc == 0; off += step)
		rc = header_split_feed(&hs, (const char *)data + off,
		    size - off < step ? size - off : step);
	if (rc == 0 && header_split_finish(&hs) == 0 && (st.eoh != 1 || st.cr))
		abort();
	header_split_free(&hs);
	return 0;
}
