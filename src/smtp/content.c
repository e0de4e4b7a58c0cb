/*
 * content.c - message content on its way out of tern-smtp: the queue
 * holds it with CRLF line ends and not dot-stuffed; here a '.' that
 * begins a line is doubled (RFC 5321 4.5.2) and the end marker added,
 * chunk by chunk, without copying the message whole.
 */
#include "autoconfig.h"

#include <event2/buffer.h>
#include <string.h>

#include "smtp.h"

void
dot_state_init(struct dot_state *st)
{
	st->at_line_start = true;
	st->last_cr = false;
	st->bytes = 0;
}

void
dot_stuff(struct dot_state *st, const void *data, size_t len,
    struct evbuffer *out)
{
	const char *p = data, *end = p + len;

	st->bytes += len;
	while (p < end) {
		const char *nl;

		if (st->at_line_start && *p == '.')
			evbuffer_add(out, ".", 1);
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			evbuffer_add(out, p, (size_t)(end - p));
			st->at_line_start = false;
			st->last_cr = end[-1] == '\r';
			return;
		}
		evbuffer_add(out, p, (size_t)(nl + 1 - p));
		st->at_line_start = true;
		st->last_cr = false;
		p = nl + 1;
	}
}

void
dot_finish(struct dot_state *st, struct evbuffer *out)
{
	if (!st->at_line_start)
		evbuffer_add(out, st->last_cr ? "\n" : "\r\n", st->last_cr ? 1 : 2);
	evbuffer_add(out, ".\r\n", 3);
}
