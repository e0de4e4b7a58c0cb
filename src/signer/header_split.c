/*
 * header_split.c - streaming header field splitter (see header_split.h).
 * Runs in tern-signer, unprivileged.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "header_split.h"
#include "util.h"

void
header_split_init(struct header_split *hs, const struct header_split_ops *ops,
    void *arg, size_t max_field)
{
	memset(hs, 0, sizeof(*hs));
	hs->ops = ops;
	hs->arg = arg;
	hs->max_field = max_field;
	hs->line_start = true;
}

void
header_split_free(struct header_split *hs)
{
	free(hs->field);
	hs->field = NULL;
	hs->len = hs->cap = 0;
}

static int
header_split_fail(struct header_split *hs, const char *why)
{
	if (hs->error == NULL)
		hs->error = why;
	return -1;
}

static int
header_split_append(struct header_split *hs, const char *p, size_t n)
{
	if (hs->len + n > hs->max_field)
		return header_split_fail(hs, "header field too long");
	if (hs->len + n > hs->cap) {
		hs->cap = hs->cap == 0 ? 256 : hs->cap;
		while (hs->cap < hs->len + n)
			hs->cap *= 2;
		hs->field = xrealloc(hs->field, hs->cap);
	}
	memcpy(hs->field + hs->len, p, n);
	hs->len += n;
	return 0;
}

/* Hands the field collected so far to the callback. */
static int
header_split_flush(struct header_split *hs)
{
	size_t len = hs->len;

	if (len == 0)
		return 0;
	hs->len = 0;
	if (hs->ops->field(hs->arg, hs->field, len) == -1)
		return header_split_fail(hs, "the header field was refused");
	return 0;
}

static int
header_split_end_of_header(struct header_split *hs)
{
	if (header_split_flush(hs) == -1)
		return -1;
	hs->in_body = true;
	if (hs->ops->eoh(hs->arg) == -1)
		return header_split_fail(hs, "the end of the header was refused");
	return 0;
}

/*
 * Lines end in CRLF in the body too: a bare CR or LF would be read
 * differently by the signer and by a verifier (or by a server that sees
 * a smuggled end of data), so the message is not signed.
 */
static int
header_split_check_body(struct header_split *hs, const char *p, size_t n)
{
	const char *end = p + n;

	if (n > 0 && hs->cr) {
		if (*p != '\n')
			return header_split_fail(hs, "bare CR in the body");
		hs->cr = false;
		p++;
	}
	/* Line by line with memchr: the only CR of a line is just before
	 * its LF. */
	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		const char *stop = lf != NULL ? lf : end;
		const char *cr = memchr(p, '\r', (size_t)(stop - p));

		if (lf == NULL) {
			if (cr != NULL && cr != end - 1)
				return header_split_fail(hs, "bare CR in the body");
			hs->cr = cr != NULL;	/* its LF comes in the next chunk */
			return 0;
		}
		if (cr == NULL)
			return header_split_fail(hs, "bare LF in the body");
		if (cr != lf - 1)
			return header_split_fail(hs, "bare CR in the body");
		p = lf + 1;
	}
	return 0;
}

int
header_split_feed(struct header_split *hs, const char *buf, size_t len)
{
	size_t i = 0;

	if (hs->error != NULL)
		return -1;
	while (i < len && !hs->in_body) {
		char c = buf[i++];

		if (hs->blank_cr) {
			if (c != '\n')
				return header_split_fail(hs, "bare CR in the header");
			hs->blank_cr = false;
			if (header_split_end_of_header(hs) == -1)
				return -1;
			break;
		}
		if (hs->cr) {
			if (c != '\n')
				return header_split_fail(hs, "bare CR in the header");
			hs->cr = false;
			hs->line_start = true;
			continue;
		}
		if (c == '\n')
			return header_split_fail(hs, "bare LF in the header");
		if (hs->line_start) {
			hs->line_start = false;
			if (c == '\r') {
				hs->blank_cr = true;
				hs->line_start = true;
				continue;
			}
			if (c == ' ' || c == '\t') {
				if (hs->len == 0)
					return header_split_fail(hs, "the header "
					    "starts with a continuation line");
				if (header_split_append(hs, "\r\n", 2) == -1)
					return -1;
			} else if (header_split_flush(hs) == -1) {
				return -1;
			}
		}
		if (c == '\r') {
			hs->cr = true;
			continue;
		}
		if (header_split_append(hs, &c, 1) == -1)
			return -1;
	}
	if (hs->in_body && i < len) {
		if (header_split_check_body(hs, buf + i, len - i) == -1)
			return -1;
		if (hs->ops->body(hs->arg, buf + i, len - i) == -1)
			return header_split_fail(hs, "the body was refused");
	}
	return 0;
}

int
header_split_finish(struct header_split *hs)
{
	if (hs->error != NULL)
		return -1;
	if (hs->in_body)
		return hs->cr ? header_split_fail(hs, "bare CR in the body") : 0;
	if (hs->cr || hs->blank_cr)
		return header_split_fail(hs, "bare CR in the header");
	return header_split_end_of_header(hs);
}
