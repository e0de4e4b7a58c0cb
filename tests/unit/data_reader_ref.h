/*
 * data_reader_ref.h - the byte-at-a-time DATA/BDAT decoder tern-smtpd
 * used before src/smtpd/data.c learned to skip through whole lines: the
 * reference the unit test and the fuzz target hold the fast one to, call
 * by call (consumed bytes, output, flags, size, end). Test code only.
 */
#ifndef TERN_DATA_READER_REF_H
#define TERN_DATA_READER_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/smtpd/data.h"

enum { REF_BOL, REF_BOL_DOT, REF_BOL_DOT_CR, REF_MID, REF_CR };

struct ref_reader {
	int state;
	bool raw, done;
	unsigned flags;
	size_t line_len;
	uint64_t size;
};

static inline void
ref_reader_init(struct ref_reader *r, bool raw)
{
	memset(r, 0, sizeof(*r));
	r->state = REF_BOL;
	r->raw = raw;
}

static inline void
ref_emit(struct ref_reader *r, uint8_t *out, size_t *o, uint8_t c)
{
	out[(*o)++] = c;
	r->size++;
	if (c == '\n') {
		r->line_len = 0;
		return;
	}
	if (c != '\r' && ++r->line_len > SMTP_TEXT_LINE_MAX - 2)
		r->flags |= DATA_LONG_LINE;
}

static inline size_t
ref_reader_feed(struct ref_reader *r, const uint8_t *in, size_t n,
    uint8_t *out, size_t *out_len)
{
	size_t i = 0, o = 0;

	while (i < n && !r->done) {
		uint8_t c = in[i];

		switch (r->state) {
		case REF_BOL:
			if (c == '.' && !r->raw) {
				r->state = REF_BOL_DOT;
				i++;
				continue;
			}
			r->state = REF_MID;
			continue;
		case REF_BOL_DOT:
			if (c == '\r') {
				r->state = REF_BOL_DOT_CR;
				i++;
				continue;
			}
			r->state = REF_MID;
			continue;
		case REF_BOL_DOT_CR:
			if (c == '\n') {
				r->done = true;
				i++;
				continue;
			}
			r->flags |= DATA_BARE_CR;
			ref_emit(r, out, &o, '\r');
			r->state = REF_MID;
			continue;
		case REF_MID:
			if (c == '\r') {
				r->state = REF_CR;
			} else if (c == '\n') {
				r->flags |= DATA_BARE_LF;
				ref_emit(r, out, &o, c);
			} else {
				ref_emit(r, out, &o, c);
			}
			i++;
			continue;
		case REF_CR:
			if (c == '\n') {
				ref_emit(r, out, &o, '\r');
				ref_emit(r, out, &o, '\n');
				r->state = REF_BOL;
				i++;
				continue;
			}
			r->flags |= DATA_BARE_CR;
			ref_emit(r, out, &o, '\r');
			r->state = REF_MID;
			continue;
		}
	}
	*out_len = o;
	return i;
}

#endif
