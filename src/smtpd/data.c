/*
 * data.c - the DATA and BDAT stream decoder of tern-smtpd (see data.h).
 * A byte-at-a-time state machine at the start of a line and at a CR held
 * across two calls; inside lines, and from line to line while no line
 * starts with a dot, it only looks for the next CR or LF (16 bytes at a
 * time with SSE2) and copies the whole stretch at once: that is nearly
 * all of a message. It keeps no message bytes of its own, so memory
 * stays flat however long the stream is.
 * Runs in tern-smtpd (unprivileged) and in the fuzz and unit tests.
 */
#include "autoconfig.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* The first CR or LF in [p, end), or end. */
static const uint8_t *
find_line_break(const uint8_t *p, const uint8_t *end)
{
#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');

	for (; end - p >= 16; p += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));

		if (m != 0)
			return p + __builtin_ctz(m);
	}
#endif
	for (; p < end; p++)
		if (*p == '\r' || *p == '\n')
			break;
	return p;
}

/*
 * Inside a line: runs to the end of the input, to a CR that ends it (held
 * until the next byte is known) or to the start of a line that starts
 * with a dot (left to the state machine), and copies what it passed.
 * Returns the input bytes consumed.
 */
static size_t
data_reader_lines(struct data_reader *r, const uint8_t *in, size_t n,
    uint8_t *out, size_t *o)
{
	const uint8_t *p = in, *end = in + n, *q, *copy_end;

	for (;;) {
		q = find_line_break(p, end);
		r->line_len += (size_t)(q - p);
		/* 1000 bytes with CRLF: at most 998 before it. */
		if (r->line_len > SMTP_TEXT_LINE_MAX - 2)
			r->flags |= DATA_LONG_LINE;
		if (q == end) {
			p = copy_end = end;
			break;
		}
		if (*q == '\n') {
			/* A bare LF is content, never a line start. */
			r->flags |= DATA_BARE_LF;
			r->line_len = 0;
			p = q + 1;
			continue;
		}
		if (q + 1 == end) {
			/* A CR last: CRLF or bare, the next call knows. */
			r->state = D_CR;
			copy_end = q;
			p = end;
			break;
		}
		if (q[1] != '\n') {
			/* A bare CR is content; the line goes on. */
			r->flags |= DATA_BARE_CR;
			p = q + 1;
			continue;
		}
		r->line_len = 0;
		p = q + 2;
		if (p == end || (*p == '.' && !r->raw)) {
			r->state = D_BOL;
			copy_end = p;
			break;
		}
	}
	memcpy(out + *o, in, (size_t)(copy_end - in));
	*o += (size_t)(copy_end - in);
	r->size += (uint64_t)(copy_end - in);
	return (size_t)(p - in);
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
		case D_MID:
			i += data_reader_lines(r, in + i, n - i, out, &o);
			continue;
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
