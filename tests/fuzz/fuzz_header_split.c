/*
 * fuzz_header_split.c - libFuzzer target for tern-signer's streaming
 * header splitter, which sees message content from submitters: the first
 * input byte picks the chunk size, the rest is the message. Nothing may
 * crash, and every field handed on must fit the limit and never contain a
 * bare CR or LF.
 */
#include "autoconfig.h"

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

static int
check_eoh(void *arg)
{
	int *eoh = arg;

	if (++*eoh != 1)
		abort();
	return 0;
}

static int
check_body(void *arg, const char *buf, size_t len)
{
	(void)buf;
	if (*(int *)arg != 1 || len == 0)
		abort();
	return 0;
}

static const struct header_split_ops ops = { check_field, check_eoh, check_body };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct header_split hs;
	size_t step;
	int eoh = 0, rc = 0;

	if (size == 0)
		return 0;
	step = data[0] % 64 + 1;
	data++;
	size--;
	header_split_init(&hs, &ops, &eoh, FUZZ_MAX_FIELD);
	for (size_t off = 0; off < size && rc == 0; off += step)
		rc = header_split_feed(&hs, (const char *)data + off,
		    size - off < step ? size - off : step);
	if (rc == 0 && header_split_finish(&hs) == 0 && eoh != 1)
		abort();
	header_split_free(&hs);
	return 0;
}
