/*
 * test_smtp_parts.c - unit tests for the pure parts of tern-smtp:
 * dot-stuffing across chunk boundaries (content.c) and the DNS answer
 * parser (dns.c) on hand-built packets, hostile ones included.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/nameser.h>
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

struct agent agent;	/* dns.c refers to it; unused by these tests */

static char *
stuff_in_pieces(const char *in, size_t piece)
{
	struct evbuffer *out = evbuffer_new();
	struct dot_state st;
	size_t len = strlen(in), n;
	char *s;

	dot_state_init(&st);
	for (size_t off = 0; off < len; off += piece)
		dot_stuff(&st, in + off, len - off < piece ? len - off : piece, out);
	assert_int_equal(st.bytes, len);
	dot_finish(&st, out);
	n = evbuffer_get_length(out);
	s = malloc(n + 1);
	evbuffer_remove(out, s, n);
	s[n] = '\0';
	evbuffer_free(out);
	return s;
}

static void
test_dot_stuffing(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "a\r\n", "a\r\n.\r\n" },
		{ ".\r\n", "..\r\n.\r\n" },
		{ "a\r\n.b\r\n..c\r\n", "a\r\n..b\r\n...c\r\n.\r\n" },
		{ "no end", "no end\r\n.\r\n" },
		{ "ends in cr\r", "ends in cr\r\n.\r\n" },
		{ "", ".\r\n" },
		{ "x.y\r\n", "x.y\r\n.\r\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t piece = 1; piece <= 8; piece++) {
			char *got = stuff_in_pieces(cases[i].in, piece);

			assert_string_equal(got, cases[i].out);
			free(got);
		}
}

/* The line-at-a-time rule of RFC 5321 4.5.2, for comparison. */
static char *
stuff_reference(const char *in, size_t len, size_t *out_len)
{
	char *out = malloc(2 * len + 8), *o = out;
	bool at_start = true;

	for (size_t i = 0; i < len; i++) {
		if (at_start && in[i] == '.')
			*o++ = '.';
		*o++ = in[i];
		at_start = in[i] == '\n';
	}
	if (!at_start)
		o += sprintf(o, "%s", len > 0 && in[len - 1] == '\r' ? "\n" : "\r\n");
	o += sprintf(o, ".\r\n");
	*out_len = (size_t)(o - out);
	return out;
}

/* Random text of dots, CRs, LFs and letters, cut in random pieces. */
static void
test_dot_stuffing_matches_reference(void **state)
{
	static const char alphabet[] = "..\r\n\r\na";
	char in[200];

	(void)state;
	srand(1);
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)rand() % sizeof(in), want_len, got_len;

		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rand() % (sizeof(alphabet) - 1)];
		char *want = stuff_reference(in, len, &want_len);
		struct evbuffer *out = evbuffer_new();
		struct dot_state st;

		dot_state_init(&st);
		for (size_t off = 0; off < len;) {
			size_t piece = 1 + (size_t)rand() % 40;

			if (piece > len - off)
				piece = len - off;
			dot_stuff(&st, in + off, piece, out);
			off += piece;
		}
		dot_finish(&st, out);
		got_len = evbuffer_get_length(out);
		char *got = malloc(got_len + 1);

		evbuffer_remove(out, got, got_len);
		assert_int_equal(got_len, want_len);
		assert_memory_equal(got, want, want_len);
		free(got);
		free(want);
		evbuffer_free(out);
	}
}

/* example.test MX: 10 mx1.example.test (ttl 300), 20 mx2 (ttl 60). */
static const uint8_t mx_answer[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
	7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0,
	0, 15, 0, 1,
	0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0x01, 0x2c, 0, 8,
	0, 10, 3, 'm', 'x', '1', 0xc0, 0x0c,
	0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0, 60, 0, 8,
	0, 20, 3, 'm', 'x', '2', 0xc0, 0x0c,
};

static void
test_dns_parse_mx(void **state)
{
	struct dns_answer a;

	(void)state;
	memset(&a, 0, sizeof(a));
	assert_int_equal(dns_parse(mx_answer, sizeof(mx_answer), ns_t_mx, &a), 0);
	assert_int_equal(a.rcode, 0);
	assert_int_equal(a.n_rrs, 2);
	assert_string_equal(a.rrs[0].name, "mx1.example.test");
	assert_int_equal(a.rrs[0].pref, 10);
	assert_string_equal(a.rrs[1].name, "mx2.example.test");
	assert_int_equal(a.rrs[1].pref, 20);
	assert_int_equal(a.min_ttl, 60);
	dns_answer_clear(&a);

	/* Asking for A in an MX answer finds nothing. */
	assert_int_equal(dns_parse(mx_answer, sizeof(mx_answer), ns_t_a, &a), 0);
	assert_int_equal(a.n_rrs, 0);
	dns_answer_clear(&a);

	/* Every truncation fails cleanly or parses fewer records. */
	for (size_t len = 0; len < sizeof(mx_answer); len++) {
		int rc = dns_parse(mx_answer, len, ns_t_mx, &a);

		assert_true(rc == -1 || a.n_rrs < 2);
		dns_answer_clear(&a);
	}
}

static void
test_dns_parse_null_mx_and_nxdomain(void **state)
{
	static const uint8_t null_mx[] = {
		0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
		1, 'n', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
		0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0, 60, 0, 3, 0, 0, 0,
	};
	static const uint8_t nxdomain[] = {
		0, 1, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0,
		1, 'n', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
	};
	/* An MX whose rdata points at itself: a compression loop. */
	static const uint8_t loop[] = {
		0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
		1, 'n', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
		0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0, 60, 0, 4, 0, 10, 0xc0, 0x26,
	};
	struct dns_answer a;

	(void)state;
	memset(&a, 0, sizeof(a));
	assert_int_equal(dns_parse(null_mx, sizeof(null_mx), ns_t_mx, &a), 0);
	assert_int_equal(a.n_rrs, 1);
	assert_string_equal(a.rrs[0].name, "");
	assert_int_equal(a.rrs[0].pref, 0);
	dns_answer_clear(&a);
	assert_int_equal(dns_parse(nxdomain, sizeof(nxdomain), ns_t_mx, &a), 0);
	assert_int_equal(a.rcode, 3);
	assert_int_equal(a.n_rrs, 0);
	dns_answer_clear(&a);
	assert_int_equal(dns_parse(loop, sizeof(loop), ns_t_mx, &a), -1);
	dns_answer_clear(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_dot_stuffing_matches_reference),
		cmocka_unit_test(test_dns_parse_mx),
		cmocka_unit_test(test_dns_parse_null_mx_and_nxdomain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
