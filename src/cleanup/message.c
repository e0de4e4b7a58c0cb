/*
 * message.c - the streaming message reader of tern-cleanup: line ends
 * normalized to CRLF (so tern never emits a bare CR or LF another server
 * could read as a smuggled end of data), the header section collected as
 * fields, the body passed on in pieces, every limit checked on the way.
 * Pure code; runs in tern-cleanup.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "util.h"

void
msg_reader_init(struct msg_reader *r, const struct msg_reader_opts *o,
    msg_headers_fn on_headers, msg_body_fn on_body, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->opts = *o;
	r->on_headers = on_headers;
	r->on_body = on_body;
	r->arg = arg;
	r->at_start = true;
	header_list_init(&r->headers);
}

void
msg_reader_free(struct msg_reader *r)
{
	header_list_free(&r->headers);
	free(r->out);
	r->out = NULL;
}

static void
set_error(struct msg_reader *r, enum msg_error e)
{
	if (r->error == MSG_OK)
		r->error = e;
}

static void
flush_body(struct msg_reader *r)
{
	if (r->out_len > 0 && r->error == MSG_OK)
		r->on_body(r->arg, r->out, r->out_len);
	r->out_len = 0;
}

static void
emit_body(struct msg_reader *r, const char *p, size_t n)
{
	if (r->out == NULL)
		r->out = xmalloc(MSG_BODY_FLUSH + MSG_LINE_MAX + 2);
	memcpy(r->out + r->out_len, p, n);
	r->out_len += n;
	if (r->out_len >= MSG_BODY_FLUSH)
		flush_body(r);
}

static void
end_headers(struct msg_reader *r)
{
	r->in_body = true;
	r->on_headers(r->arg, &r->headers);
}

/* One complete line (without its line end) has been read. */
static void
take_line(struct msg_reader *r)
{
	const char *line = r->line;
	size_t len = r->line_len, name;

	r->n_lines++;
	r->size += len + 2;
	if (r->opts.size_limit > 0 && r->size > r->opts.size_limit) {
		set_error(r, MSG_ERR_TOO_BIG);
		return;
	}
	if (r->line_8bit) {
		r->has_8bit = true;
		if (!r->opts.allow_8bit) {
			set_error(r, MSG_ERR_8BIT);
			return;
		}
	}
	if (r->in_body) {
		emit_body(r, line, len);
		emit_body(r, "\r\n", 2);
		return;
	}
	if (r->at_start) {
		r->at_start = false;
		/* An mbox postmark ("From sender date") is not the message. */
		if (len >= 5 && memcmp(line, "From ", 5) == 0) {
			r->size -= len + 2;
			return;
		}
	}
	if (len == 0) {
		end_headers(r);
		return;
	}
	if ((line[0] == ' ' || line[0] == '\t') && r->headers.n > 0) {
		header_list_continue(&r->headers, line, len);
	} else if ((name = header_name_len(line, len)) > 0) {
		if (r->headers.n >= MSG_HEADER_FIELDS_MAX) {
			set_error(r, MSG_ERR_HEADER_TOO_BIG);
			return;
		}
		header_list_append(&r->headers, line, len, name);
	} else {
		/* Not a header field: the body starts here, after the empty
		 * line the sender left out. */
		end_headers(r);
		emit_body(r, line, len);
		emit_body(r, "\r\n", 2);
		return;
	}
	if (r->headers.bytes > MSG_HEADER_BYTES_MAX)
		set_error(r, MSG_ERR_HEADER_TOO_BIG);
}

static void
end_line(struct msg_reader *r)
{
	if (r->error == MSG_OK)
		take_line(r);
	r->line_len = 0;
	r->line_8bit = false;
}

/* How many bytes at p come before the next CR, LF or NUL. */
static size_t
plain_span(const unsigned char *p, size_t n)
{
	const unsigned char *stop;

	if ((stop = memchr(p, '\r', n)) != NULL)
		n = (size_t)(stop - p);
	if ((stop = memchr(p, '\n', n)) != NULL)
		n = (size_t)(stop - p);
	if ((stop = memchr(p, '\0', n)) != NULL)
		n = (size_t)(stop - p);
	return n;
}

static bool
has_8bit(const unsigned char *p, size_t n)
{
	unsigned char any = 0;

	for (size_t i = 0; i < n; i++)
		any |= p[i];
	return (any & 0x80) != 0;
}

/* The first byte >= 0x80 in p[0..n), 32 bytes at a time. */
static const unsigned char *
first_8bit(const unsigned char *p, size_t n)
{
	const uint64_t high = 0x8080808080808080ULL;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		uint64_t w[4];

		memcpy(w, p + i, sizeof(w));
		if (((w[0] | w[1] | w[2] | w[3]) & high) != 0)
			break;
	}
	for (; i < n; i++)
		if (p[i] & 0x80)
			return p + i;
	return NULL;
}

/* Where the line holding p (which lies in [start, p]) begins. */
static const unsigned char *
line_start_of(const unsigned char *start, const unsigned char *p)
{
	while (p > start && p[-1] != '\n')
		p--;
	return p;
}

static size_t
count_lines(const unsigned char *p, const unsigned char *end)
{
	size_t n = 0;

	while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		n++;
		p++;
	}
	return n;
}

/*
 * The body's fast path, at the start of a line with nothing pending: the
 * run of whole lines at p that end in CRLF, are at most MSG_LINE_MAX long,
 * hold no other CR, no NUL and (unless allowed) no 8-bit byte, and keep
 * the message within its size limit, is already normalized: it is passed
 * on as it is, in one piece, not copied line by line. Returns the bytes
 * taken; the line that stops the run goes the slow way (which normalizes
 * it or finds its error). Every scan covers the run only, so input the
 * fast path refuses line after line (bare LF ends) costs one memchr more
 * per line, not a rescan of the chunk.
 */
static size_t
body_run(struct msg_reader *r, const unsigned char *p, size_t n)
{
	const unsigned char *end = p + n, *q = p, *bad;
	size_t lines = 0;

	while (q < end) {
		const unsigned char *lf = memchr(q, '\n', (size_t)(end - q));
		size_t text;

		if (lf == NULL || lf == q || lf[-1] != '\r')
			break;
		text = (size_t)(lf - 1 - q);
		if (text > MSG_LINE_MAX || memchr(q, '\r', text) != NULL)
			break;
		if (r->opts.size_limit > 0 &&
		    r->size + (uint64_t)(lf + 1 - p) > r->opts.size_limit)
			break;
		q = lf + 1;
		lines++;
	}
	/* A NUL, or 8-bit data not allowed, ends the run before its line
	 * (rare: the slow way then refuses the message). */
	if (q > p && (bad = memchr(p, '\0', (size_t)(q - p))) != NULL) {
		q = line_start_of(p, bad);
		lines = count_lines(p, q);
	}
	if (q > p && (!r->has_8bit || !r->opts.allow_8bit) &&
	    (bad = first_8bit(p, (size_t)(q - p))) != NULL) {
		if (r->opts.allow_8bit) {
			r->has_8bit = true;
		} else {
			q = line_start_of(p, bad);
			lines = count_lines(p, q);
		}
	}
	if (q == p)
		return 0;
	r->n_lines += lines;
	r->size += (uint64_t)(q - p);
	flush_body(r);
	r->on_body(r->arg, (const char *)p, (size_t)(q - p));
	return (size_t)(q - p);
}

void
msg_reader_feed(struct msg_reader *r, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len && r->error == MSG_OK; i++) {
		unsigned char c;
		size_t k;

		if (r->in_body && r->line_len == 0 && !r->pending_cr &&
		    (i += body_run(r, p + i, len - i)) == len)
			break;
		c = p[i];

		/* The plain bytes of a line, as a run: nearly all of them. */
		if (!r->pending_cr && (k = plain_span(p + i, len - i)) > 1) {
			if (k > MSG_LINE_MAX - r->line_len) {
				set_error(r, MSG_ERR_LINE_TOO_LONG);
				break;
			}
			if (!r->line_8bit && has_8bit(p + i, k))
				r->line_8bit = true;
			memcpy(r->line + r->line_len, p + i, k);
			r->line_len += k;
			i += k - 1;
			continue;
		}

		if (r->pending_cr) {
			r->pending_cr = false;
			end_line(r);
			if (c == '\n')
				continue;
			if (r->error != MSG_OK)
				break;
		}
		if (c == '\r') {
			r->pending_cr = true;
			continue;
		}
		if (c == '\n') {
			end_line(r);
			continue;
		}
		if (c == '\0') {
			set_error(r, MSG_ERR_NUL);
			break;
		}
		if (r->line_len >= MSG_LINE_MAX) {
			set_error(r, MSG_ERR_LINE_TOO_LONG);
			break;
		}
		if (c >= 0x80)
			r->line_8bit = true;
		r->line[r->line_len++] = (char)c;
	}
	flush_body(r);
}

void
msg_reader_finish(struct msg_reader *r)
{
	if (r->finished)
		return;
	r->finished = true;
	if (r->error == MSG_OK && (r->pending_cr || r->line_len > 0)) {
		r->pending_cr = false;
		end_line(r);
	}
	if (r->error == MSG_OK && !r->in_body)
		end_headers(r);
	flush_body(r);
}

void
msg_error_reply(enum msg_error e, unsigned *code, const char **status,
    const char **text)
{
	switch (e) {
	case MSG_OK:
		*code = 250;
		*status = "2.0.0";
		*text = "Ok";
		return;
	case MSG_ERR_LINE_TOO_LONG:
		*code = 550;
		*status = "5.6.0";
		*text = "Message contains a line longer than 998 characters";
		return;
	case MSG_ERR_8BIT:
		*code = 550;
		*status = "5.6.0";
		*text = "Message contains 8-bit data but was not sent with "
		    "BODY=8BITMIME or SMTPUTF8";
		return;
	case MSG_ERR_NUL:
		*code = 550;
		*status = "5.6.0";
		*text = "Message contains a NUL character";
		return;
	case MSG_ERR_HEADER_TOO_BIG:
		*code = 552;
		*status = "5.3.4";
		*text = "Message header section too large";
		return;
	case MSG_ERR_TOO_BIG:
		*code = 552;
		*status = "5.3.4";
		*text = "Message size exceeds fixed limit";
		return;
	}
	*code = 451;
	*status = "4.3.0";
	*text = "Internal error";
}
