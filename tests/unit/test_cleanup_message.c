/*
 * test_cleanup_message.c - the streaming message reader of tern-cleanup
 * (src/cleanup/message.c): line ends normalized to CRLF whatever the
 * chunking, header fields collected with their folding, the start of the
 * body found, every limit enforced.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "util.h"

/* What the reader produced: headers as "field\r\n" lines, a marker,
 * then the body. */
struct result {
	char *out;
	size_t len;
	int headers_calls;
};

static void
add(struct result *r, const char *p, size_t n)
{
	r->out = xrealloc(r->out, r->len + n + 1);
	memcpy(r->out + r->len, p, n);
	r->len += n;
	r->out[r->len] = '\0';
}

static void
on_headers(void *arg, struct header_list *h)
{
	struct result *r = arg;

	r->headers_calls++;
	for (size_t i = 0; i < h->n; i++) {
		add(r, h->v[i].text, h->v[i].len);
		add(r, "\r\n", 2);
	}
	add(r, "|\r\n", 3);
}

static void
on_body(void *arg, const char *p, size_t n)
{
	add(arg, p, n);
}

/* Reads msg in chunks of size step (0: all at once). */
static enum msg_error
run(const char *msg, size_t len, size_t step, bool allow_8bit, uint64_t limit,
    struct result *r)
{
	struct msg_reader rd;
	struct msg_reader_opts o = { allow_8bit, limit };
	enum msg_error e;

	memset(r, 0, sizeof(*r));
	add(r, "", 0);
	msg_reader_init(&rd, &o, on_headers, on_body, r);
	if (step == 0)
		step = len ? len : 1;
	for (size_t off = 0; off < len; off += step)
		msg_reader_feed(&rd, msg + off, len - off < step ? len - off : step);
	msg_reader_finish(&rd);
	e = rd.error;
	msg_reader_free(&rd);
	return e;
}

struct norm_case {
	const char *in;
	const char *out;
};

static const struct norm_case norm_cases[] = {
	{ "A: 1\r\n\r\nbody\r\n", "A: 1\r\n|\r\nbody\r\n" },
	{ "A: 1\n\nbody\n", "A: 1\r\n|\r\nbody\r\n" },
	{ "A: 1\r\rbody\r", "A: 1\r\n|\r\nbody\r\n" },
	{ "A: 1\r\n\r\nx\ry\nz\r\n", "A: 1\r\n|\r\nx\r\ny\r\nz\r\n" },
	{ "A: 1\r\n\r\nx\n\r\ny", "A: 1\r\n|\r\nx\r\n\r\ny\r\n" },
	{ "A: 1\r\n\r\n.\r\n..\r\n", "A: 1\r\n|\r\n.\r\n..\r\n" },
	/* folding is kept, CRLF between the lines */
	{ "Subject: a\n  b\n\tc\nX: y\n\nB\n",
	    "Subject: a\r\n  b\r\n\tc\r\nX: y\r\n|\r\nB\r\n" },
	/* the obsolete "Name :" form is a header field */
	{ "Subject : a\r\n\r\n", "Subject : a\r\n|\r\n" },
	/* no empty line: the first non-field line starts the body */
	{ "A: 1\r\nthis is body\r\nmore\r\n", "A: 1\r\n|\r\nthis is body\r\nmore\r\n" },
	{ "no header at all\r\n", "|\r\nno header at all\r\n" },
	{ " leading space\r\n", "|\r\n leading space\r\n" },
	/* headers only */
	{ "A: 1\r\nB: 2", "A: 1\r\nB: 2\r\n|\r\n" },
	{ "", "|\r\n" },
	{ "\r\n", "|\r\n" },
	/* an mbox postmark is dropped */
	{ "From someone Mon Jan 1\nA: 1\n\nb\n", "A: 1\r\n|\r\nb\r\n" },
	/* but "From:" is a field */
	{ "From: a@b\n\nb\n", "From: a@b\r\n|\r\nb\r\n" },
};

static void
test_normalization_any_chunking(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(norm_cases) / sizeof(norm_cases[0]); i++) {
		const struct norm_case *c = &norm_cases[i];
		size_t steps[] = { 0, 1, 2, 3, 7 };

		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			struct result r;

			assert_int_equal(run(c->in, strlen(c->in), steps[s], false, 0,
			    &r), MSG_OK);
			if (strcmp(r.out, c->out) != 0)
				fail_msg("case %zu step %zu: got '%s'", i, steps[s],
				    r.out);
			assert_int_equal(r.headers_calls, 1);
			free(r.out);
		}
	}
}

static void
test_line_length(void **state)
{
	char *msg = xmalloc(3000);
	struct result r;
	size_t n;

	(void)state;
	/* 998 characters in the body are fine; 999 are not. */
	strcpy(msg, "A: 1\r\n\r\n");
	n = strlen(msg);
	memset(msg + n, 'x', 998);
	memcpy(msg + n + 998, "\r\n", 3);
	assert_int_equal(run(msg, strlen(msg), 0, false, 0, &r), MSG_OK);
	free(r.out);
	memset(msg + n, 'x', 999);
	memcpy(msg + n + 999, "\n", 2);
	assert_int_equal(run(msg, strlen(msg), 5, false, 0, &r),
	    MSG_ERR_LINE_TOO_LONG);
	free(r.out);
	/* A long header line too. */
	strcpy(msg, "X: ");
	memset(msg + 3, 'y', 1200);
	strcpy(msg + 1203, "\r\n\r\nb\r\n");
	assert_int_equal(run(msg, strlen(msg), 0, false, 0, &r),
	    MSG_ERR_LINE_TOO_LONG);
	free(r.out);
	free(msg);
}

static void
test_8bit_nul_and_size(void **state)
{
	struct result r;
	const char *m8 = "A: 1\r\n\r\ncaf\xc3\xa9\r\n";
	const char *h8 = "Subject: caf\xc3\xa9\r\n\r\nb\r\n";
	const char nul[] = "A: 1\r\n\r\na\0b\r\n";

	(void)state;
	assert_int_equal(run(m8, strlen(m8), 0, false, 0, &r), MSG_ERR_8BIT);
	free(r.out);
	assert_int_equal(run(h8, strlen(h8), 0, false, 0, &r), MSG_ERR_8BIT);
	free(r.out);
	assert_int_equal(run(m8, strlen(m8), 0, true, 0, &r), MSG_OK);
	assert_string_equal(r.out, "A: 1\r\n|\r\ncaf\xc3\xa9\r\n");
	free(r.out);
	assert_int_equal(run(nul, sizeof(nul) - 1, 0, true, 0, &r), MSG_ERR_NUL);
	free(r.out);
	/* Size counts normalized bytes: "A: 1\r\n\r\nb\r\n" is 11. */
	assert_int_equal(run("A: 1\n\nb\n", 8, 0, false, 11, &r), MSG_OK);
	free(r.out);
	assert_int_equal(run("A: 1\n\nbc\n", 9, 0, false, 11, &r), MSG_ERR_TOO_BIG);
	free(r.out);
}

static void
test_header_limits(void **state)
{
	size_t n = MSG_HEADER_FIELDS_MAX + 1, len = 0;
	char *msg = xmalloc(n * 8 + 8);
	struct result r;

	(void)state;
	for (size_t i = 0; i < n; i++) {
		memcpy(msg + len, "X: 1\r\n", 6);
		len += 6;
	}
	memcpy(msg + len, "\r\nb\r\n", 5);
	len += 5;
	assert_int_equal(run(msg, len, 4096, false, 0, &r), MSG_ERR_HEADER_TOO_BIG);
	free(r.out);
	/* One field folded over many lines past the byte limit. */
	free(msg);
	n = MSG_HEADER_BYTES_MAX / 900 + 2;
	msg = xmalloc(n * 903 + 16);
	len = 0;
	memcpy(msg, "X: a\r\n", 6);
	len = 6;
	for (size_t i = 0; i < n; i++) {
		msg[len] = ' ';
		memset(msg + len + 1, 'f', 899);
		memcpy(msg + len + 900, "\r\n", 2);
		len += 902;
	}
	memcpy(msg + len, "\r\nb\r\n", 5);
	len += 5;
	assert_int_equal(run(msg, len, 65536, false, 0, &r), MSG_ERR_HEADER_TOO_BIG);
	free(r.out);
	free(msg);
}

static void
test_big_body_streams(void **state)
{
	size_t lines = 5000, len = 0;
	char *msg = xmalloc(lines * 81 + 16);
	struct result r;

	(void)state;
	memcpy(msg, "A: 1\n\n", 6);
	len = 6;
	for (size_t i = 0; i < lines; i++) {
		memset(msg + len, 'a' + (char)(i % 26), 79);
		msg[len + 79] = '\n';
		len += 80;
	}
	assert_int_equal(run(msg, len, 1000, false, 0, &r), MSG_OK);
	assert_int_equal(r.len, 9 + lines * 81);
	assert_memory_equal(r.out + 9 + 81 * 27, "bbbb", 4);
	free(r.out);
	free(msg);
}

/* What a reading of a message ends with, beside the output. */
struct outcome {
	enum msg_error error;
	uint64_t size;
	size_t n_lines;
	bool has_8bit;
};

/* Reads msg in pieces: one byte at a time when piece_max is 1 (the byte
 * by byte path only: no whole line ever arrives at once), else random
 * sizes from 1 to piece_max. */
static void
run_pieces(const char *msg, size_t len, size_t piece_max, bool allow_8bit,
    uint64_t limit, struct result *r, struct outcome *out)
{
	struct msg_reader rd;
	struct msg_reader_opts o = { allow_8bit, limit };

	memset(r, 0, sizeof(*r));
	add(r, "", 0);
	msg_reader_init(&rd, &o, on_headers, on_body, r);
	for (size_t off = 0; off < len;) {
		size_t n = piece_max == 1 ? 1 : 1 + (size_t)rand() % piece_max;

		if (n > len - off)
			n = len - off;
		msg_reader_feed(&rd, msg + off, n);
		off += n;
	}
	msg_reader_finish(&rd);
	out->error = rd.error;
	out->size = rd.size;
	out->n_lines = rd.n_lines;
	out->has_8bit = rd.has_8bit;
	msg_reader_free(&rd);
}

/*
 * The body's fast path (whole CRLF lines passed on in place) against the
 * byte by byte path: random bodies of CRLF lines with now and then a bare
 * LF or CR, an 8-bit byte, a NUL, an overlong line, cut in random pieces,
 * with and without 8BITMIME and a size limit, give the same output, error,
 * size, line count and 8-bit flag.
 */
static void
test_body_fast_path_matches_bytewise(void **state)
{
	(void)state;
	srand(1234);
	for (int iter = 0; iter < 3000; iter++) {
		size_t cap = 40000, len = 0;
		char *msg = xmalloc(cap + 2000);
		int odd = rand() % 4;	/* 0: clean; else rare oddities */
		bool allow = rand() % 2;
		uint64_t limit = rand() % 3 == 0 ? (uint64_t)(rand() % 30000) : 0;
		struct result a, b;
		struct outcome oa, ob;

		len += (size_t)snprintf(msg, cap, "Subject: t\r\nFrom: a@b\r\n\r\n");
		while (len < cap - 1100) {
			size_t line = (size_t)(rand() % 3 == 0 ? rand() % 1000 :
			    rand() % 80);
			int end = rand() % 200;

			if (odd && rand() % 300 == 0)
				line = 990 + (size_t)(rand() % 20);
			for (size_t k = 0; k < line; k++) {
				char c = (char)('a' + rand() % 26);

				if (odd && rand() % 5000 == 0)
					c = (char)(0x80 | rand());
				if (odd == 3 && rand() % 20000 == 0)
					c = '\0';
				msg[len++] = c;
			}
			if (odd && end == 0)
				msg[len++] = '\n';
			else if (odd && end == 1)
				msg[len++] = '\r';
			else {
				msg[len++] = '\r';
				msg[len++] = '\n';
			}
			if (rand() % 500 == 0)
				break;
		}
		run_pieces(msg, len, 1, allow, limit, &a, &oa);
		run_pieces(msg, len, 1 + (size_t)(rand() % 20000), allow, limit,
		    &b, &ob);
		assert_int_equal(oa.error, ob.error);
		if (oa.error == MSG_OK) {
			assert_int_equal(a.len, b.len);
			assert_memory_equal(a.out, b.out, a.len);
			assert_int_equal(oa.size, ob.size);
			assert_int_equal(oa.n_lines, ob.n_lines);
			assert_int_equal(oa.has_8bit, ob.has_8bit);
		}
		free(a.out);
		free(b.out);
		free(msg);
	}
}

static void
test_error_replies(void **state)
{
	unsigned code;
	const char *status, *text;

	(void)state;
	msg_error_reply(MSG_ERR_LINE_TOO_LONG, &code, &status, &text);
	assert_int_equal(code, 550);
	assert_string_equal(status, "5.6.0");
	msg_error_reply(MSG_ERR_8BIT, &code, &status, &text);
	assert_int_equal(code, 550);
	assert_string_equal(status, "5.6.0");
	msg_error_reply(MSG_ERR_TOO_BIG, &code, &status, &text);
	assert_int_equal(code, 552);
	assert_string_equal(status, "5.3.4");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalization_any_chunking),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_8bit_nul_and_size),
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_big_body_streams),
		cmocka_unit_test(test_body_fast_path_matches_bytewise),
		cmocka_unit_test(test_error_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
