/*
 * test_smtp_reply.c - table-driven tests of the SMTP reply parser: good
 * replies (single, multiline, split at every byte), and every kind of
 * hostile input (bare LF, NUL, long lines, inconsistent codes, garbage)
 * parsed into a bounded record or rejected.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

struct good_case {
	const char *in;
	unsigned code;
	const char *status;
	const char *text;
	unsigned lines;
};

static const struct good_case good_cases[] = {
	{ "250 2.0.0 OK queued\r\n", 250, "2.0.0", "2.0.0 OK queued", 1 },
	{ "220 mx.example ESMTP\r\n", 220, "", "mx.example ESMTP", 1 },
	{ "250\r\n", 250, "", "", 1 },
	{ "250 \r\n", 250, "", "", 1 },
	{ "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 250, "",
	  "mx.example\nPIPELINING\n8BITMIME", 3 },
	{ "250-\r\n250 OK\r\n", 250, "", "\nOK", 2 },
	{ "550 5.1.1 <a@b>: no such user\r\n", 550, "5.1.1",
	  "5.1.1 <a@b>: no such user", 1 },
	/* A status of the wrong class is not a status. */
	{ "550 2.1.1 odd\r\n", 550, "", "2.1.1 odd", 1 },
	{ "451 4.7.650 greylisted\r\n", 451, "4.7.650", "4.7.650 greylisted", 1 },
	{ "451 4.7.6500 x\r\n", 451, "", "4.7.6500 x", 1 },
	/* Control and 8-bit bytes never reach logs. */
	{ "250 a\tb\x01\xff\r\n", 250, "", "a?b??", 1 },
};

static void
parse_whole(const char *in, size_t len, struct smtp_reply_parser *p,
    enum smtp_reply_result want)
{
	size_t used = 0;

	smtp_reply_parser_reset(p);
	assert_int_equal(smtp_reply_feed(p, in, len, &used), want);
	if (want == SMTP_REPLY_DONE)
		assert_int_equal(used, len);
}

static void
test_good_replies(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
		const struct good_case *c = &good_cases[i];
		struct smtp_reply_parser p;
		size_t len = strlen(c->in), used;

		parse_whole(c->in, len, &p, SMTP_REPLY_DONE);
		assert_int_equal(p.reply.code, c->code);
		assert_string_equal(p.reply.status, c->status);
		assert_string_equal(p.reply.text, c->text);
		assert_int_equal(p.reply.n_lines, c->lines);
		assert_null(p.reply.why);

		/* One byte at a time gives the same record. */
		smtp_reply_parser_reset(&p);
		for (size_t j = 0; j < len; j++) {
			enum smtp_reply_result r = smtp_reply_feed(&p, c->in + j, 1,
			    &used);

			assert_int_equal(used, 1);
			assert_int_equal(r, j + 1 == len ? SMTP_REPLY_DONE :
			    SMTP_REPLY_MORE);
		}
		assert_int_equal(p.reply.code, c->code);
		assert_string_equal(p.reply.text, c->text);
	}
}

static void
test_two_replies_in_one_read(void **state)
{
	const char *in = "250 first\r\n354 go ahead\r\n";
	struct smtp_reply_parser p;
	size_t used;

	(void)state;
	smtp_reply_parser_reset(&p);
	assert_int_equal(smtp_reply_feed(&p, in, strlen(in), &used),
	    SMTP_REPLY_DONE);
	assert_int_equal(used, 11);
	assert_int_equal(p.reply.code, 250);
	assert_int_equal(smtp_reply_feed(&p, in + used, strlen(in) - used, &used),
	    SMTP_REPLY_DONE);
	assert_int_equal(p.reply.code, 354);
	assert_string_equal(p.reply.text, "go ahead");
}

struct bad_case {
	const char *in;
	size_t len;
	const char *why;
};

#define BAD(s, w) { s, sizeof(s) - 1, w }

static const struct bad_case bad_cases[] = {
	BAD("250 ok\n", "bare LF"),
	BAD("250 o\rk\r\n", "bare CR"),
	BAD("250 o\0k\r\n", "NUL"),
	BAD("250-a\r\n251 b\r\n", "inconsistent"),
	BAD("25\r\n", "without a reply code"),
	BAD("hello\r\n", "without a reply code"),
	BAD("150 x\r\n", "without a reply code"),
	BAD("650 x\r\n", "without a reply code"),
	BAD("250x\r\n", "no space or hyphen"),
	BAD("\r\n", "without a reply code"),
};

static void
test_bad_replies(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct smtp_reply_parser p;

		parse_whole(bad_cases[i].in, bad_cases[i].len, &p, SMTP_REPLY_BAD);
		assert_int_equal(p.reply.code, 0);
		assert_non_null(strstr(p.reply.why, bad_cases[i].why));
	}
}

/* A 64 KiB line is kept to the bound; a reply over the byte bound and one
 * with too many lines are malformed; nothing overflows. */
static void
test_bounds(void **state)
{
	struct smtp_reply_parser p;
	size_t n = 64 * 1024, used, total = 0;
	char *big = malloc(n + 7);
	enum smtp_reply_result r;

	(void)state;
	memcpy(big, "250 ", 4);
	memset(big + 4, 'A', n);
	memcpy(big + 4 + n, "\r\n", 2);
	parse_whole(big, n + 6, &p, SMTP_REPLY_DONE);
	assert_int_equal(p.reply.text_len, SMTP_REPLY_TEXT_MAX);
	assert_true(p.reply.truncated);
	assert_int_equal(strlen(p.reply.text), SMTP_REPLY_TEXT_MAX);

	/* Continuation lines forever: bounded. */
	memcpy(big, "250-", 4);
	smtp_reply_parser_reset(&p);
	do {
		r = smtp_reply_feed(&p, big, n + 6, &used);
		total += used;
	} while (r == SMTP_REPLY_MORE && total < 10 * SMTP_REPLY_MAX_BYTES);
	assert_int_equal(r, SMTP_REPLY_BAD);
	assert_string_equal(p.reply.why, "reply too long");
	free(big);

	smtp_reply_parser_reset(&p);
	total = 0;
	do {
		r = smtp_reply_feed(&p, "250-\r\n", 6, &used);
		total += used;
	} while (r == SMTP_REPLY_MORE && total < 100000);
	assert_int_equal(r, SMTP_REPLY_BAD);
	assert_string_equal(p.reply.why, "too many reply lines");
}

static void
test_format(void **state)
{
	struct smtp_reply_parser p;
	char buf[64];

	(void)state;
	parse_whole("250-2.0.0 OK\r\n250 more\r\n", 24, &p, SMTP_REPLY_DONE);
	smtp_reply_format(&p.reply, buf, sizeof(buf));
	assert_string_equal(buf, "250 2.0.0 OK more");
	parse_whole("250 ok\n", 7, &p, SMTP_REPLY_BAD);
	smtp_reply_format(&p.reply, buf, sizeof(buf));
	assert_string_equal(buf, "malformed reply: bare LF in reply");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_replies),
		cmocka_unit_test(test_two_replies_in_one_read),
		cmocka_unit_test(test_bad_replies),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
