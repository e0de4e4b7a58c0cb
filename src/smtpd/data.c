/*
 * data.c - the DATA and BDAT stream decoder of tern-smtpd (see data.h).
 * A byte-at-a-time state machine, except that the plain bytes inside a
 * line are copied as a run (they are nearly all of a message); it keeps
 * no message bytes of its own, so memory stays flat however long the
 * stream is.
 * Runs in tern-smtpd (unprivileged) and in the fuzz and unit tests.
 */
#include "autoconfig.h"

#include <string.h>

#include "data.h"

enum data_state {
	D_BOL,		/* at the start of a line (after CRLF) */
	D_BOL_DOT,	/* "." at the start of a line */
	D_BOL_DOT_CR,	/* ".\r" at the start of a line */
	D_MID,		/* inside a line */
	D_CR,		/* "\r" inside a line, not yet known to be CRLF */
};

void
data_reader_init(struct data_reader *r, bool raw)
{
	r->state = D_BOL;
	r->raw = raw;
	r->done = false;
	r->flags = 0;
	r->line_len = 0;
	r->size = 0;
}

static void
emit(struct data_reader *r, uint8_t *out, size_t *o, uint8_t c)
{
	out[(*o)++] = c;
	r->size++;
	if (c == '\n') {
		r->line_len = 0;
		return;
	}
	/* 1000 bytes with CRLF: at most 998 before it. */
	if (c != '\r' && ++r->line_len > SMTP_TEXT_LINE_MAX - 2)
		r->flags |= DATA_LONG_LINE;
}

/* How many bytes at p come before the next CR or LF. */
static size_t
plain_span(const uint8_t *p, size_t n)
{
	const uint8_t *cr = memchr(p, '\r', n);
	const uint8_t *lf;

	if (cr != NULL)
		n = (size_t)(cr - p);
	lf = memchr(p, '\n', n);
	return lf != NULL ? (size_t)(lf - p) : n;
}

size_t
data_reader_feed(struct data_reader *r, const uint8_t *in, size_t n,
    uint8_t *out, size_t *out_len)
{
	size_t i = 0, o = 0;

	while (i < n && !r->done) {
		uint8_t c = in[i];

		switch (r->state) {
		case D_BOL:
			if (c == '.' && !r->raw) {
				r->state = D_BOL_DOT;
				i++;
				continue;
			}
			r->state = D_MID;
			continue;	/* the same byte, inside the line */
		case D_BOL_DOT:
			if (c == '\r') {
				r->state = D_BOL_DOT_CR;
				i++;
				continue;
			}
			/* A leading dot is dropped (RFC 5321 4.5.2). */
			r->state = D_MID;
			continue;
		case D_BOL_DOT_CR:
			if (c == '\n') {
				r->done = true;
				i++;
				continue;
			}
			/* ".\r" then something else: the CR was bare. */
			r->flags |= DATA_BARE_CR;
			emit(r, out, &o, '\r');
			r->state = D_MID;
			continue;
		case D_MID: {
			size_t k = plain_span(in + i, n - i);

			if (k > 0) {
				memcpy(out + o, in + i, k);
				o += k;
				i += k;
				r->size += k;
				r->line_len += k;
				/* 1000 bytes with CRLF: at most 998 before it. */
				if (r->line_len > SMTP_TEXT_LINE_MAX - 2)
					r->flags |= DATA_LONG_LINE;
				continue;
			}
			if (c == '\r') {
				r->state = D_CR;
			} else {
				/* A bare LF is content, never a line start. */
				r->flags |= DATA_BARE_LF;
				r->line_len = 0;
				out[o++] = c;
				r->size++;
			}
			i++;
			continue;
		}
		case D_CR:
			if (c == '\n') {
				emit(r, out, &o, '\r');
				emit(r, out, &o, '\n');
				r->state = D_BOL;
				i++;
				continue;
			}
			r->flags |= DATA_BARE_CR;
			emit(r, out, &o, '\r');
			r->state = D_MID;
			continue;
		}
	}
	*out_len = o;
	return i;
}

void
data_reader_finish(struct data_reader *r, uint8_t *out, size_t *out_len)
{
	size_t o = 0;

	if (r->state == D_CR) {
		r->flags |= DATA_BARE_CR;
		emit(r, out, &o, '\r');
		r->state = D_MID;
	}
	*out_len = o;
}
