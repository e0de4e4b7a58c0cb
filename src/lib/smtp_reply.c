/*
 * smtp_reply.c - the bounded SMTP reply parser of tern-smtp (see
 * smtp_reply.h). It works byte by byte on a small state, so a reply split
 * across any number of reads parses the same as one read, and no input
 * size reaches a buffer without a bound check.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"

void
smtp_reply_parser_reset(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

static enum smtp_reply_result
reply_bad(struct smtp_reply_parser *p, const char *why)
{
	p->reply.code = 0;
	p->reply.status[0] = '\0';
	p->reply.why = why;
	p->done = true;
	return SMTP_REPLY_BAD;
}

static void
text_add(struct smtp_reply *r, char c)
{
	if (r->text_len >= SMTP_REPLY_TEXT_MAX) {
		r->truncated = true;
		return;
	}
	r->text[r->text_len++] = c;
	r->text[r->text_len] = '\0';
}

/* "X.Y.Z" at the start of the text, X the code's class, Y up to 3 digits,
 * Z up to 3 digits, then a space or the end (RFC 3463). */
static void
reply_find_status(struct smtp_reply *r)
{
	const char *s = r->text;
	size_t i = 0, n;

	if (s[0] != (char)('0' + r->code / 100) || s[1] != '.')
		return;
	i = 2;
	for (n = 0; s[i] >= '0' && s[i] <= '9' && n < 4; i++, n++)
		;
	if (n == 0 || n > 3 || s[i] != '.')
		return;
	i++;
	for (n = 0; s[i] >= '0' && s[i] <= '9' && n < 4; i++, n++)
		;
	if (n == 0 || n > 3 || (s[i] != ' ' && s[i] != '\0'))
		return;
	memcpy(r->status, s, i);
	r->status[i] = '\0';
}

/* The current line ended with CRLF. */
static enum smtp_reply_result
reply_line_end(struct smtp_reply_parser *p)
{
	struct smtp_reply *r = &p->reply;
	unsigned code;

	if (p->line_pos < 3)
		return reply_bad(p, "line without a reply code");
	code = (unsigned)(p->line_code[0] - '0') * 100 +
	    (unsigned)(p->line_code[1] - '0') * 10 + (unsigned)(p->line_code[2] - '0');
	if (r->n_lines == 0)
		r->code = code;
	else if (r->code != code)
		return reply_bad(p, "inconsistent reply codes across lines");
	r->n_lines++;
	if (r->n_lines > SMTP_REPLY_MAX_LINES)
		return reply_bad(p, "too many reply lines");
	if (p->line_pos == 3)
		p->line_last = true;	/* "250\r\n" is a last line too */
	p->line_pos = 0;
	if (!p->line_last)
		return SMTP_REPLY_MORE;
	reply_find_status(r);
	p->done = true;
	return SMTP_REPLY_DONE;
}

enum smtp_reply_result
smtp_reply_feed(struct smtp_reply_parser *p, const char *buf, size_t len,
    size_t *consumed)
{
	struct smtp_reply *r = &p->reply;
	enum smtp_reply_result res;
	size_t i;

	if (p->done)
		smtp_reply_parser_reset(p);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (++p->bytes > SMTP_REPLY_MAX_BYTES) {
			*consumed = i + 1;
			return reply_bad(p, "reply too long");
		}
		if (p->saw_cr) {
			p->saw_cr = false;
			if (c != '\n') {
				*consumed = i + 1;
				return reply_bad(p, "bare CR in reply");
			}
			res = reply_line_end(p);
			if (res != SMTP_REPLY_MORE) {
				*consumed = i + 1;
				return res;
			}
			continue;
		}
		if (c == '\r') {
			p->saw_cr = true;
			continue;
		}
		if (c == '\n') {
			*consumed = i + 1;
			return reply_bad(p, "bare LF in reply");
		}
		if (c == '\0') {
			*consumed = i + 1;
			return reply_bad(p, "NUL byte in reply");
		}
		if (p->line_pos < 3) {
			if (c < '0' || c > '9' || (p->line_pos == 0 &&
			    (c < '2' || c > '5'))) {
				*consumed = i + 1;
				return reply_bad(p, "line without a reply code");
			}
			p->line_code[p->line_pos++] = (char)c;
			continue;
		}
		if (p->line_pos == 3) {
			if (c == ' ')
				p->line_last = true;
			else if (c == '-')
				p->line_last = false;
			else {
				*consumed = i + 1;
				return reply_bad(p, "no space or hyphen after the reply code");
			}
			p->line_pos++;
			if (r->n_lines > 0)
				text_add(r, '\n');
			continue;
		}
		p->line_pos++;
		text_add(r, (c >= 0x20 && c < 0x7f) ? (char)c : '?');
	}
	*consumed = len;
	return SMTP_REPLY_MORE;
}

void
smtp_reply_format(const struct smtp_reply *r, char *buf, size_t size)
{
	if (r->code == 0)
		snprintf(buf, size, "malformed reply: %s",
		    r->why ? r->why : "unknown");
	else if (r->text_len == 0)
		snprintf(buf, size, "%u", r->code);
	else {
		snprintf(buf, size, "%u %s", r->code, r->text);
		for (char *c = buf; *c != '\0'; c++)
			if (*c == '\n')
				*c = ' ';
	}
}
