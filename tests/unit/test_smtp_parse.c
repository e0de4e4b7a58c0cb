/*
 * test_smtp_parse.c - table-driven unit tests for tern-smtpd's parsers:
 * RFC 5321 paths, MAIL/RCPT parameters with xtext, base64, and the
 * DATA/BDAT stream decoder (dot-unstuffing, smuggling sequences; against
 * the byte-at-a-time reference in data_reader_ref.h, split everywhere).
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../src/smtpd/data.h"
#include "../../src/smtpd/header_from.h"
#include "../../src/smtpd/smtp_parse.h"
#include "data_reader_ref.h"
#include "ipc.h"

static const struct {
	const char *in;
	unsigned flags;
	const char *out;	/* NULL: refused */
} paths[] = {
	{ "<a@b.test>", 0, "a@b.test" },
	{ "<A.B@EXAMPLE.Test>", 0, "A.B@example.test" },
	{ "<>", SMTP_PATH_NULL_OK, "" },
	{ "<>", 0, NULL },
	{ "<\"a b\"@x.test>", 0, "\"a b\"@x.test" },
	{ "<\"a@b\"@x.test>", 0, "\"a@b\"@x.test" },
	{ "<\"a\\\"b\"@x.test>", 0, "\"a\\\"b\"@x.test" },
	{ "<@r1.test,@r2.test:u@x.test>", 0, "u@x.test" },
	{ "<@r1.test:u@x.test>", 0, "u@x.test" },
	{ "<@bad_route:u@x.test>", 0, NULL },
	{ "<u@[192.0.2.1]>", 0, "u@[192.0.2.1]" },
	{ "<u@[IPv6:2001:db8::1]>", 0, "u@[ipv6:2001:db8::1]" },
	{ "<u@[300.1.1.1]>", 0, NULL },
	{ "<postmaster>", SMTP_PATH_POSTMASTER_OK, "postmaster" },
	{ "<Postmaster>", SMTP_PATH_POSTMASTER_OK, "postmaster" },
	{ "<postmaster>", 0, NULL },
	{ "<user>", SMTP_PATH_POSTMASTER_OK, NULL },
	{ "<a@b@c.test>", 0, NULL },
	{ "<a..b@c.test>", 0, NULL },
	{ ".a@c.test", 0, NULL },
	{ "<a.@c.test>", 0, NULL },
	{ "<a@-c.test>", 0, NULL },
	{ "<a@c-.test>", 0, NULL },
	{ "<a@c..test>", 0, NULL },
	{ "<a b@c.test>", 0, NULL },
	{ "<a@c.test", 0, NULL },
	{ "a@c.test", 0, NULL },
	{ "<\xc3\xbc@c.test>", 0, NULL },
	{ "<\xc3\xbc@c.test>", SMTP_PATH_UTF8, "\xc3\xbc@c.test" },
	{ "<a@b\xc3\xbc.test>", SMTP_PATH_UTF8, "a@b\xc3\xbc.test" },
	{ "<\xff@c.test>", SMTP_PATH_UTF8, NULL },
	{ "<\xc0\xaf@c.test>", SMTP_PATH_UTF8, NULL },
	{ "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@c.test>",
	  0, NULL },
};

static void
test_paths(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		char out[SMTP_ADDRESS_MAX + 1];
		const char *end, *why;
		int rc = smtp_path_parse(paths[i].in, paths[i].flags, out,
		    sizeof(out), &end, &why);

		if (paths[i].out == NULL) {
			if (rc != -1)
				fail_msg("accepted %s as %s", paths[i].in, out);
		} else {
			if (rc != 0)
				fail_msg("refused %s: %s", paths[i].in, why);
			assert_string_equal(out, paths[i].out);
			assert_int_equal(*end, '\0');
		}
	}
}

static void
test_relay_tricks(void **state)
{
	(void)state;
	assert_true(is_smtp_relay_trick("a%b@c.test"));
	assert_true(is_smtp_relay_trick("b!a@c.test"));
	assert_true(is_smtp_relay_trick("\"a@b\"@c.test"));
	assert_false(is_smtp_relay_trick("a+b@c.test"));
	assert_false(is_smtp_relay_trick("postmaster"));
}

static void
test_mail_params(void **state)
{
	struct smtp_mail m;
	const char *reply;

	(void)state;
	assert_int_equal(smtp_parse_mail("FROM:<a@b.test> SIZE=123 BODY=8BITMIME "
	    "RET=FULL ENVID=x+2By AUTH=<> SMTPUTF8", &m, &reply), 0);
	assert_string_equal(m.sender, "a@b.test");
	assert_int_equal(m.size, 123);
	assert_int_equal(m.body, CLEANUP_BODY_8BITMIME);
	assert_int_equal(m.ret, CLEANUP_RET_FULL);
	assert_true(m.smtputf8);
	assert_string_equal(m.envid, "x+y");
	assert_int_equal(smtp_parse_mail("from: <>", &m, &reply), 0);
	assert_string_equal(m.sender, "");

	static const char *const bad[] = {
		"FROM:<a@b.test> SIZE=", "FROM:<a@b.test> SIZE=12x",
		"FROM:<a@b.test> SIZE=99999999999999999999999",
		"FROM:<a@b.test> BODY=BINARYMIME", "FROM:<a@b.test> RET=",
		"FROM:<a@b.test> ENVID=a+0Db", "FROM:<a@b.test> ENVID=a+0",
		"FROM:<a@b.test> ENVID=a+zz", "FROM:<a@b.test> SMTPUTF8=yes",
		"FROM:<a@b.test> SIZE=1 SIZE=2", "FROM:<a@b.test> X=1",
		"FROM:<a@b.test>junk", "TO:<a@b.test>", "FROM:<\xc3\xbc@b.test>",
		"FROM:<a@b.test> ENVID=" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (smtp_parse_mail(bad[i], &m, &reply) != -1)
			fail_msg("accepted MAIL %s", bad[i]);
}

static void
test_rcpt_params(void **state)
{
	struct smtp_rcpt r;
	const char *reply;

	(void)state;
	assert_int_equal(smtp_parse_rcpt("TO:<u@d.test> NOTIFY=SUCCESS,DELAY "
	    "ORCPT=RFC822;u+40d.test", false, &r, &reply), 0);
	assert_int_equal(r.notify, CLEANUP_NOTIFY_SUCCESS | CLEANUP_NOTIFY_DELAY);
	assert_string_equal(r.orcpt, "rfc822;u@d.test");
	assert_int_equal(smtp_parse_rcpt("TO:<u@d.test> NOTIFY=NEVER", false, &r,
	    &reply), 0);
	assert_int_equal(r.notify, CLEANUP_NOTIFY_NEVER);

	static const char *const bad[] = {
		"TO:<u@d.test> NOTIFY=NEVER,SUCCESS", "TO:<u@d.test> NOTIFY=",
		"TO:<u@d.test> NOTIFY=SUCCESS,", "TO:<u@d.test> NOTIFY=SOMETIMES",
		"TO:<u@d.test> ORCPT=rfc822", "TO:<u@d.test> ORCPT=x400;u+40d.test",
		"TO:<u@d.test> ORCPT=rfc822;u+0A+40d.test", "TO:<u@d.test> ORCPT=rfc822;nodomain",
		"TO:<>", "TO:<\xc3\xbc@d.test>", "TO:<u@d.test> SIZE=1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (smtp_parse_rcpt(bad[i], false, &r, &reply) != -1)
			fail_msg("accepted RCPT %s", bad[i]);
	assert_int_equal(smtp_parse_rcpt("TO:<\xc3\xbc@d.test>", true, &r, &reply), 0);
}

static void
test_split_and_base64(void **state)
{
	char line[] = "MAIL   FROM:<a@b>", bad[] = "MA1L x", *verb, *args;
	unsigned char out[64];

	(void)state;
	assert_int_equal(smtp_split_command(line, &verb, &args), 0);
	assert_string_equal(verb, "MAIL");
	assert_string_equal(args, "FROM:<a@b>");
	assert_int_equal(smtp_split_command(bad, &verb, &args), -1);
	assert_int_equal(smtp_base64_decode("AGFsaWNlAHB3", out, sizeof(out)), 9);
	assert_memory_equal(out, "\0alice\0pw", 9);
	assert_int_equal(smtp_base64_decode("YQ==", out, sizeof(out)), 1);
	assert_int_equal(smtp_base64_decode("YQ=", out, sizeof(out)), -1);
	assert_int_equal(smtp_base64_decode("Y=Q=", out, sizeof(out)), -1);
	assert_int_equal(smtp_base64_decode("!!!!", out, sizeof(out)), -1);
}

/* Feeds a stream one byte at a time and whole; both must agree. */
static size_t
decode(const char *in, size_t n, bool raw, char *out, size_t *out_len,
    unsigned *flags, bool *done)
{
	struct data_reader r, r1;
	uint8_t buf[4096];
	size_t used, o = 0, used1 = 0, o1 = 0, len;

	data_reader_init(&r, raw);
	used = data_reader_feed(&r, (const uint8_t *)in, n, buf, &len);
	memcpy(out, buf, len);
	*out_len = len;
	data_reader_init(&r1, raw);
	while (used1 < n && !r1.done) {
		used1 += data_reader_feed(&r1, (const uint8_t *)in + used1, 1,
		    buf + o1, &len);
		o1 += len;
	}
	assert_int_equal(used, used1);
	assert_int_equal(*out_len, o1);
	assert_memory_equal(out, buf, o1);
	assert_int_equal(r.flags, r1.flags);
	*flags = r.flags;
	*done = r.done;
	(void)o;
	return used;
}

static void
test_data_reader(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
		size_t out_len;
		unsigned flags;
		bool done;
		size_t used;
	} cases[] = {
		{ "a\r\n.\r\n", 6, "a\r\n", 3, 0, true, 6 },
		{ ".\r\n", 3, "", 0, 0, true, 3 },
		{ "..x\r\n.\r\nNEXT", 12, ".x\r\n", 4, 0, true, 8 },
		{ ".x\r\n.\r\n", 7, "x\r\n", 3, 0, true, 7 },
		{ "a\n.\nb", 5, "a\n.\nb", 5, DATA_BARE_LF, false, 5 },
		{ "a\n.\r\nb", 6, "a\n.\r\nb", 6, DATA_BARE_LF, false, 6 },
		{ "a\r.\r\nb", 6, "a\r.\r\nb", 6, DATA_BARE_CR, false, 6 },
		{ "a\r\n.\rb", 6, "a\r\n\rb", 5, DATA_BARE_CR, false, 6 },
		{ "a\r\n\0.\r\n", 7, "a\r\n\0.\r\n", 7, 0, false, 7 },
		{ "a\r\n.\0\r\n", 7, "a\r\n\0\r\n", 6, 0, false, 7 },
		{ "a\r\r\n.\r\r\n", 9, "a\r\r\n\r\r\n", 8, DATA_BARE_CR, false, 9 },
	};
	char out[64];
	size_t len;
	unsigned flags;
	bool done;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t used = decode(cases[i].in, cases[i].len, false, out, &len,
		    &flags, &done);

		assert_int_equal(used, cases[i].used);
		assert_int_equal(done, cases[i].done);
		assert_int_equal(flags, cases[i].flags);
		assert_int_equal(len, cases[i].out_len);
		assert_memory_equal(out, cases[i].out, len);
	}
}

static void
test_data_reader_long_line_and_bdat(void **state)
{
	char in[1100], out[1200];
	size_t len;
	unsigned flags;
	bool done;

	(void)state;
	memset(in, 'x', sizeof(in));
	memcpy(in + 998, "\r\n", 2);
	decode(in, 1000, false, out, &len, &flags, &done);
	assert_int_equal(flags, 0);
	decode(in + 1, 999 + 0, false, out, &len, &flags, &done);
	assert_int_equal(flags, 0);
	memset(in, 'x', sizeof(in));
	memcpy(in + 999, "\r\n", 2);
	decode(in, 1001, false, out, &len, &flags, &done);
	assert_int_equal(flags, DATA_LONG_LINE);
	/* BDAT: dots are content and nothing ends the stream. */
	decode("a\r\n.\r\n..\r\n", 10, true, out, &len, &flags, &done);
	assert_false(done);
	assert_int_equal(len, 10);
	assert_memory_equal(out, "a\r\n.\r\n..\r\n", 10);
}

/*
 * Feeds in[0..n) cut at the given points to the decoder and to the
 * byte-at-a-time reference: every call must consume, produce and note
 * the same.
 */
static void
compare_with_reference(const uint8_t *in, size_t n, bool raw,
    const size_t *cuts, size_t n_cuts)
{
	struct data_reader r;
	struct ref_reader ref;
	uint8_t *out = malloc(n + 2), *ref_out = malloc(n + 2);
	size_t at = 0;

	assert_non_null(out);
	assert_non_null(ref_out);
	data_reader_init(&r, raw);
	ref_reader_init(&ref, raw);
	for (size_t c = 0; c <= n_cuts && !r.done; c++) {
		size_t to = c < n_cuts ? cuts[c] : n, len, ref_len, used, ref_used;

		if (to < at)
			continue;
		used = data_reader_feed(&r, in + at, to - at, out, &len);
		ref_used = ref_reader_feed(&ref, in + at, to - at, ref_out, &ref_len);
		assert_int_equal(used, ref_used);
		assert_int_equal(len, ref_len);
		assert_memory_equal(out, ref_out, len);
		assert_int_equal(r.flags, ref.flags);
		assert_int_equal(r.done, ref.done);
		assert_int_equal(r.size, ref.size);
		assert_int_equal(r.line_len, ref.line_len);
		at += used;
	}
	free(out);
	free(ref_out);
}

/* Every input of the table, whole, cut once at every point, and cut
 * into pieces of every size from 1 to 40. */
static void
compare_cut_everywhere(const uint8_t *in, size_t n, bool raw)
{
	size_t cuts[4096];

	compare_with_reference(in, n, raw, NULL, 0);
	for (size_t k = 0; k <= n; k++) {
		cuts[0] = k;
		compare_with_reference(in, n, raw, cuts, 1);
	}
	for (size_t step = 1; step <= 40; step++) {
		size_t m = 0;

		for (size_t k = step; k < n && m < sizeof(cuts) / sizeof(cuts[0]);
		    k += step)
			cuts[m++] = k;
		compare_with_reference(in, n, raw, cuts, m);
	}
}

static void
test_data_reader_against_reference(void **state)
{
	static const char *const streams[] = {
		"a\r\n.\r\n",
		"Subject: x\r\n\r\nbody line one\r\nline two\r\n.\r\nMAIL FROM:<>\r\n",
		"..dot-stuffed\r\n...two\r\n.\r\n",
		"one line of sixteen bytes and more\r\n.x\r\n..\r\n.\r\n",
		"bare\nLF\n.\nand\r\n.\r\n",
		"bare\rCR\r.\r\r\n.\rx\r\n.\r\n",
		"\r\n.\r\n",
		"\r\r\r\n\n\n.\r\r\n.\r\n",
		"a\0b\r\n.\0\r\n\0.\r\n.\r\n",
		"0123456789abcdef0123456789abcdef\r0123456789abcdef\n.\r\n.\r\n",
	};
	uint8_t buf[3000];
	uint32_t seed = 1;

	(void)state;
	for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
		compare_cut_everywhere((const uint8_t *)streams[i],
		    strlen(streams[i]), false);
		compare_cut_everywhere((const uint8_t *)streams[i],
		    strlen(streams[i]), true);
	}
	/* Lines of 997 to 1000 bytes with CRLF: the limit is 998 before it. */
	for (size_t len = 996; len <= 1000; len++) {
		memset(buf, 'x', sizeof(buf));
		memcpy(buf + len - 2, "\r\n", 2);
		memcpy(buf + len, "y\r\n.\r\n", 6);
		compare_cut_everywhere(buf, len + 6, false);
	}
	/* Random streams of the bytes that matter. */
	for (int round = 0; round < 300; round++) {
		static const uint8_t alphabet[] = "xx.\r\n\r\n";
		size_t n = 1 + round % 200;

		for (size_t k = 0; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			buf[k] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		compare_cut_everywhere(buf, n, round & 1);
	}
}

static bool
is_example(const char *domain, void *arg)
{
	(void)arg;
	return strcasecmp(domain, "example.test") == 0;
}

static void
test_header_from(void **state)
{
	static const struct {
		const char *hdr;
		int rc;
	} cases[] = {
		{ "From: app@example.test\r\n", 0 },
		{ "Subject: x\r\nFROM: \"A, B\" <app@EXAMPLE.test>\r\n", 0 },
		{ "From: App (evil@other.test) <app@example.test>\r\n", 0 },
		{ "From: a@example.test,\r\n b@example.test\r\n", 0 },
		{ "From: list: a@example.test, b@example.test;\r\n", 0 },
		{ "Subject: no from\r\n", 0 },
		{ "From: app@other.test\r\n", -1 },
		{ "From: a@example.test,\r\n b@other.test\r\n", -1 },
		{ "From: \"app@example.test\" <x@other.test>\r\n", -1 },
		{ "From: <app@example.test.other.test>\r\n", -1 },
		{ "From: undisclosed\r\n", -1 },
		{ "From: <>\r\n", -1 },
		{ "From: \"unbalanced <a@example.test>\r\n", -1 },
		{ "From: a@example.test\r\nFrom: b@other.test\r\n", -1 },
		{ "From : evil@other.test\r\n", -1 },
		{ "from\t: app@example.test\r\n", 0 },
		{ "From-Not: x@other.test\r\n", 0 },
		{ "From: evil@other.test\0\r\n", -1 },
		/* One mailbox per element, as a reader would see it. */
		{ "From: <app@example.test> <evil@other.test>\r\n", -1 },
		{ "From: A <app@example.test> x\r\n", -1 },
		{ "From: evil@other.test app@example.test\r\n", -1 },
		{ "From: evil@other.test@example.test\r\n", -1 },
		{ "From: evil@other.test:app@example.test\r\n", -1 },
		{ "From: <@r: >, <app@example.test>\r\n", -1 },
		{ "From: <@route.test:app@example.test>\r\n", 0 },
		{ "From: \"John Doe\"@example.test\r\n", 0 },
		{ "From: A <app@example.test> (comment)\r\n", 0 },
		{ "From: app(comment)@EXAMPLE.test\r\n", 0 },
		{ "From: undisclosed-recipients:;\r\n", 0 },
	};
	char bad[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = header_check_from(cases[i].hdr, strlen(cases[i].hdr),
		    is_example, NULL, bad, sizeof(bad));

		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): %d", i, cases[i].hdr, rc);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_relay_tricks),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_rcpt_params),
		cmocka_unit_test(test_split_and_base64),
		cmocka_unit_test(test_data_reader),
		cmocka_unit_test(test_data_reader_long_line_and_bdat),
		cmocka_unit_test(test_data_reader_against_reference),
		cmocka_unit_test(test_header_from),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
