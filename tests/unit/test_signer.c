/*
 * test_signer.c - unit tests for the pure parts of DKIM signing: the
 * streaming header splitter of tern-signer (every way a stream can be cut),
 * DKIM key loading and checks, the published record's parser and the zone
 * line ternctl prints.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkim_key.h"
#include "header_split.h"
#include "util.h"

/* ---- header_split ---- */

/* What the splitter reported, as text: "F[field]" "E" "B[body]". */
struct trace {
	char buf[8192];
	size_t len;
	bool refuse_field;
	bool in_body;			/* the last entry is a body piece */
};

static void
trace_add(struct trace *t, const char *tag, const char *p, size_t n)
{
	int w = snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%s%.*s%s",
	    tag, (int)n, p, *tag == 'E' ? "" : "]");

	t->len += (size_t)w;
}

static int
trace_field(void *arg, const char *field, size_t len)
{
	struct trace *t = arg;

	trace_add(t, "F[", field, len);
	return t->refuse_field ? -1 : 0;
}

static int
trace_eoh(void *arg)
{
	trace_add(arg, "E", "", 0);
	return 0;
}

static int
trace_body(void *arg, const char *buf, size_t len)
{
	struct trace *t = arg;

	/* Adjacent body pieces join, so every cut gives the same trace. */
	if (t->len > 0 && t->in_body) {
		t->len--;
		t->len += (size_t)snprintf(t->buf + t->len,
		    sizeof(t->buf) - t->len, "%.*s]", (int)len, buf);
		return 0;
	}
	trace_add(t, "B[", buf, len);
	t->in_body = true;
	return 0;
}

static const struct header_split_ops trace_ops = {
	trace_field, trace_eoh, trace_body,
};

/* Splits msg fed in pieces of `step` bytes; returns 0 or -1. */
static int
split(const char *msg, size_t step, struct trace *t, const char **error)
{
	struct header_split hs;
	size_t len = strlen(msg);
	int rc = 0;

	memset(t->buf, 0, sizeof(t->buf));
	t->len = 0;
	t->in_body = false;
	header_split_init(&hs, &trace_ops, t, 64);
	for (size_t off = 0; off < len && rc == 0; off += step)
		rc = header_split_feed(&hs, msg + off,
		    len - off < step ? len - off : step);
	if (rc == 0)
		rc = header_split_finish(&hs);
	*error = hs.error;
	header_split_free(&hs);
	return rc;
}

static void
expect_split(const char *msg, const char *want)
{
	struct trace t = { .refuse_field = false };
	const char *error;

	for (size_t step = 1; step <= strlen(msg) + 1; step++) {
		assert_int_equal(split(msg, step, &t, &error), 0);
		if (strcmp(t.buf, want) != 0)
			fail_msg("step %zu: got %s want %s", step, t.buf, want);
	}
}

static void
expect_split_error(const char *msg, const char *why)
{
	struct trace t = { .refuse_field = false };
	const char *error;

	for (size_t step = 1; step <= strlen(msg) + 1; step++) {
		assert_int_equal(split(msg, step, &t, &error), -1);
		assert_non_null(error);
		if (strstr(error, why) == NULL)
			fail_msg("step %zu: error '%s', want '%s'", step, error, why);
	}
}

static void
test_split_fields_and_body(void **state)
{
	(void)state;
	expect_split("From: a@b\r\nSubject: hi\r\n\r\nbody\r\nmore\r\n",
	    "F[From: a@b]F[Subject: hi]EB[body\r\nmore\r\n]");
	/* Continuation lines stay in their field, with their CRLF. */
	expect_split("To: a,\r\n\tb,\r\n  c\r\nX: y\r\n\r\n",
	    "F[To: a,\r\n\tb,\r\n  c]F[X: y]E");
	/* The body is passed on as is. */
	expect_split("A: 1\r\n\r\n\r\n.\r\n\r\nx",
	    "F[A: 1]EB[\r\n.\r\n\r\nx]");
}

static void
test_split_message_ends_early(void **state)
{
	(void)state;
	/* No empty line: the header ends with the message. */
	expect_split("A: 1\r\nB: 2\r\n", "F[A: 1]F[B: 2]E");
	/* A last line without CRLF is still a field. */
	expect_split("A: 1\r\nB: 2", "F[A: 1]F[B: 2]E");
	/* An empty message: only the end of header. */
	expect_split("", "E");
	/* No header at all. */
	expect_split("\r\nbody", "EB[body]");
	expect_split("A: 1\r\n\r\n\r\n\r\nx\r\ny\r\n",
	    "F[A: 1]EB[\r\n\r\nx\r\ny\r\n]");
}

static void
test_split_errors(void **state)
{
	struct trace t = { .refuse_field = true };
	const char *error;

	(void)state;
	expect_split_error("A: 1\nB: 2\r\n\r\n", "bare LF");
	expect_split_error("A: 1\rB: 2\r\n\r\n", "bare CR");
	expect_split_error("A: 1\r\n\rx\r\n", "bare CR");
	expect_split_error("A: 1\r", "bare CR");
	expect_split_error(" A: 1\r\n\r\n", "continuation");
	expect_split_error("A: 1\r\n\r\nx\ny\r\n", "bare LF in the body");
	expect_split_error("A: 1\r\n\r\n\n", "bare LF in the body");
	expect_split_error("A: 1\r\n\r\nx\ry\r\n", "bare CR in the body");
	expect_split_error("A: 1\r\n\r\nx\r", "bare CR in the body");
	expect_split_error("A: 1\r\n\r\nok\r\n\r\r\n", "bare CR in the body");
	expect_split_error("A: 1\r\n\r\nok\r\nx\n", "bare LF in the body");
	expect_split_error("A: 1\r\n\r\nok\r\n\n\r\n", "bare LF in the body");
	/* max_field is 64 in these tests. */
	expect_split_error("A: 0123456789012345678901234567890123456789012345678"
	    "901234567890123456789\r\n\r\n", "too long");
	assert_int_equal(split("A: 1\r\n\r\n", 3, &t, &error), -1);
	assert_string_equal(error, "the header field was refused");
}

/* Bodies of longer lines: a bare CR or LF at every place of a line, and a
 * CR that ends a chunk, are found whatever the chunking; clean ones pass. */
static void
test_split_long_body_lines(void **state)
{
	const char *head = "A: 1\r\n\r\n";
	char msg[256], want[300];

	(void)state;
	for (size_t at = 0; at < 40; at++) {
		for (int kind = 0; kind < 2; kind++) {
			char line[41];

			memset(line, 'x', 40);
			line[40] = '\0';
			line[at] = kind ? '\n' : '\r';
			snprintf(msg, sizeof(msg), "%sok%s\r\n%s\r\n", head,
			    "0123456789abcdefghij", line);
			expect_split_error(msg, kind ? "bare LF in the body" :
			    "bare CR in the body");
		}
	}
	snprintf(msg, sizeof(msg), "%s%s\r\n%s\r\n\r\n%s\r\n", head,
	    "0123456789abcdefghijklmnopqrstuvwxyz", "short",
	    "0123456789abcdefghijklmnopqrstuvwxyz0123456789");
	snprintf(want, sizeof(want), "F[A: 1]EB[%s]", msg + strlen(head));
	expect_split(msg, want);
}

/* ---- keys and records ---- */

static char tmpdir[] = "/tmp/tern-signer-test-XXXXXX";

static char *
write_key(const char *name, EVP_PKEY *pkey, bool pkcs8)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	BIO *bio = BIO_new_file(path, "w");

	assert_non_null(pkey);
	assert_non_null(bio);
	if (pkcs8)
		assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0,
		    NULL, NULL), 1);
	else
		assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, pkey,
		    NULL, NULL, 0, NULL, NULL), 1);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	return path;
}

static void
test_key_load(void **state)
{
	struct dkim_key key;
	char *why = NULL, *path, *record;

	(void)state;
	/* A traditional (PKCS#1) RSA key comes out as PKCS#8 for libopendkim. */
	path = write_key("rsa.pem", EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
	    (size_t)2048), false);
	assert_int_equal(dkim_key_load(path, &key, &why), 0);
	assert_int_equal(key.alg, DKIM_KEY_RSA);
	assert_int_equal(key.bits, 2048);
	assert_non_null(strstr(key.pem, "-----BEGIN PRIVATE KEY-----"));
	assert_true(strncmp(key.public_b64, "MIIBIjAN", 8) == 0);
	record = dkim_key_record(&key);
	assert_true(strncmp(record, "v=DKIM1; k=rsa; p=MIIB", 22) == 0);
	free(record);
	dkim_key_clear(&key);
	free(path);

	path = write_key("ed.pem", EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), true);
	assert_int_equal(dkim_key_load(path, &key, &why), 0);
	assert_int_equal(key.alg, DKIM_KEY_ED25519);
	assert_int_equal(strlen(key.public_b64), 44);	/* 32 raw bytes */
	dkim_key_clear(&key);
	free(path);

	path = write_key("short.pem", EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
	    (size_t)1024), true);
	assert_int_equal(dkim_key_load(path, &key, &why), -1);
	assert_non_null(strstr(why, "RSA key of 1024 bits is too short"));
	free(why);
	free(path);

	path = write_key("ec.pem", EVP_PKEY_Q_keygen(NULL, NULL, "EC",
	    "P-256"), true);
	assert_int_equal(dkim_key_load(path, &key, &why), -1);
	assert_non_null(strstr(why, "cannot sign DKIM"));
	free(why);
	free(path);

	path = xasprintf("%s/absent.pem", tmpdir);
	assert_int_equal(dkim_key_load(path, &key, &why), -1);
	assert_non_null(strstr(why, "No such file"));
	free(why);
	free(path);

	assert_int_equal(dkim_key_load(tmpdir, &key, &why), -1);
	free(why);
}

static void
test_zone_line(void **state)
{
	char record[600], *line;

	(void)state;
	line = dkim_key_zone_line("s1", "example.test", "v=DKIM1; p=abc");
	assert_string_equal(line,
	    "s1._domainkey.example.test. IN TXT \"v=DKIM1; p=abc\"");
	free(line);
	memset(record, 'a', 600);
	record[599] = '\0';
	line = dkim_key_zone_line("s", "d.test", record);
	/* 599 bytes: strings of 255, 255 and 89. */
	assert_non_null(strstr(line, " \"" ));
	{
		size_t quotes = 0;

		for (char *p = line; *p; p++)
			quotes += *p == '"';
		assert_int_equal(quotes, 6);
	}
	assert_int_equal(strlen(line), strlen("s._domainkey.d.test. IN TXT") +
	    599 + 3 * 3);
	free(line);
}

static void
test_record_parse(void **state)
{
	char *k, *p;
	const char *why;
	static const struct {
		const char *record;
		const char *k, *p;	/* NULL: malformed */
	} cases[] = {
		{ "v=DKIM1; k=rsa; p=AbC+/=", "rsa", "AbC+/=" },
		{ "p=AAAA", "rsa", "AAAA" },
		{ " v = DKIM1 ;k=ed25519;p= AA AA\r\n\tBB ; ", "ed25519", "AAAABB" },
		{ "v=DKIM1; h=sha256; t=s; n=note here; p=QQ", "rsa", "QQ" },
		{ "v=DKIM1; p=", "rsa", "" },	/* revoked */
		{ "k=rsa; v=DKIM1; p=AA", NULL, NULL },
		{ "v=DKIM2; p=AA", NULL, NULL },
		{ "v=DKIM1; k=rsa", NULL, NULL },
		{ "v=DKIM1; p=AA; p=BB", NULL, NULL },
		{ "v=DKIM1; k=rsa; k=ed25519; p=AA", NULL, NULL },
		{ "v=DKIM1; p=A*A", NULL, NULL },
		{ "v=DKIM1; =x; p=AA", NULL, NULL },
		{ "v=DKIM1; 1k=x; p=AA", NULL, NULL },
		{ "v=DKIM1; garbage; p=AA", NULL, NULL },
		{ "", NULL, NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = dkim_record_parse(cases[i].record,
		    strlen(cases[i].record), &k, &p, &why);

		if (cases[i].k == NULL) {
			if (rc != -1)
				fail_msg("'%s' parsed", cases[i].record);
			continue;
		}
		if (rc != 0)
			fail_msg("'%s': %s", cases[i].record, why);
		assert_string_equal(k, cases[i].k);
		assert_string_equal(p, cases[i].p);
		free(k);
		free(p);
	}
	assert_int_equal(dkim_record_parse("p=AA\0BB", 7, &k, &p, &why), -1);
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	int rc = system(cmd);

	(void)state;
	free(cmd);
	return rc == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_fields_and_body),
		cmocka_unit_test(test_split_message_ends_early),
		cmocka_unit_test(test_split_errors),
		cmocka_unit_test(test_split_long_body_lines),
		cmocka_unit_test(test_key_load),
		cmocka_unit_test(test_zone_line),
		cmocka_unit_test(test_record_parse),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
