/*
 * fuzz_cleanup_message.c - libFuzzer target for what tern-cleanup does to
 * untrusted content: the streaming reader (message.c), the header
 * helpers and fix-ups (header.c, fixup.c) and the address parser
 * (address.c). The first input byte picks the options and the chunk size.
 * Besides the sanitizers it checks the promise cleanup makes: what comes
 * out has CRLF line ends only and no line over 998 characters.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "fixup.h"
#include "header.h"
#include "ipc.h"
#include "message.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
	char *buf;
	size_t len;
	uint8_t source;
};

static void
out_add(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	o->buf = xrealloc(o->buf, o->len + n + 1);
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void
on_headers(void *arg, struct header_list *h)
{
	struct out *o = arg;
	struct fixup_env e;
	struct fixup_result r;
	struct address a;
	const char *why;

	memset(&e, 0, sizeof(e));
	e.source = o->source;
	e.hostname = "mail.tern.test";
	e.helo = h->n > 0 ? h->v[0].text : "";
	e.client_name = "c";
	e.client_addr = "192.0.2.1";
	e.tls = "";
	e.auth_user = "";
	e.sender = "s@example.test";
	e.single_rcpt = "r@dest.test";
	e.queue_id = "0123456789ABCDEF";
	e.now = 0;
	e.unique = "u";
	for (size_t i = 0; i < h->n; i++) {
		char *v = header_value_unfolded(&h->v[i]);
		char dom[256];

		(void)header_mailbox_domain(v, dom, sizeof(dom));
		(void)header_mailbox_count(v);
		(void)address_parse_mailbox(v, strlen(v), ADDRESS_UTF8 |
		    ADDRESS_ALLOW_NULL, &a, &why);
		free(v);
	}
	fixup_headers(h, &e, &r);
	if (r.code == 0) {
		r.prepend = fixup_received(&e);
		fixup_write_headers(h, &r, out_add, o);
	}
	fixup_result_free(&r);
}

static void
on_body(void *arg, const char *p, size_t n)
{
	out_add(arg, p, n);
}

/* The output has only CRLF line ends and lines of at most 998 octets
 * (generated fields included). */
static void
check_output(const struct out *o)
{
	size_t line = 0;

	for (size_t i = 0; i < o->len; i++) {
		char c = o->buf[i];

		if (c == '\r') {
			if (i + 1 >= o->len || o->buf[i + 1] != '\n')
				abort();
			i++;
			line = 0;
			continue;
		}
		if (c == '\n')
			abort();
		if (++line > MSG_LINE_MAX)
			abort();
	}
	if (o->len > 0 && (o->len < 2 || memcmp(o->buf + o->len - 2, "\r\n", 2)))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_reader r, r1;
	struct msg_reader_opts opts;
	struct out o, o1;
	size_t step;
	struct address a;
	const char *why;
	size_t end;

	if (size < 1)
		return 0;
	memset(&o, 0, sizeof(o));
	memset(&opts, 0, sizeof(opts));
	opts.allow_8bit = data[0] & 1;
	opts.size_limit = (data[0] & 2) ? 4096 : 0;
	o.source = (uint8_t)(1 + (data[0] >> 2) % 5);
	step = 1 + (size_t)(data[0] >> 4) * 7;
	data++;
	size--;

	(void)address_parse_path((const char *)data, size, ADDRESS_UTF8 |
	    ADDRESS_ALLOW_NULL, &a, &end, &why);

	msg_reader_init(&r, &opts, on_headers, on_body, &o);
	for (size_t off = 0; off < size; off += step)
		msg_reader_feed(&r, data + off, size - off < step ? size - off : step);
	msg_reader_finish(&r);
	if (r.error == MSG_OK)
		check_output(&o);

	/* One byte at a time no whole line arrives at once, so the body's
	 * fast path (whole CRLF lines passed on in place) never runs: both
	 * readings must agree. */
	memset(&o1, 0, sizeof(o1));
	o1.source = o.source;
	msg_reader_init(&r1, &opts, on_headers, on_body, &o1);
	for (size_t off = 0; off < size; off++)
		msg_reader_feed(&r1, data + off, 1);
	msg_reader_finish(&r1);
	if (r1.error != r.error)
		abort();
	if (r.error == MSG_OK && (o1.len != o.len ||
	    (o.len > 0 && memcmp(o1.buf, o.buf, o.len) != 0) ||
	    r1.size != r.size || r1.n_lines != r.n_lines ||
	    r1.has_8bit != r.has_8bit))
		abort();
	msg_reader_free(&r1);
	free(o1.buf);
	msg_reader_free(&r);
	free(o.buf);
	return 0;
}
