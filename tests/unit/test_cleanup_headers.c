/*
 * test_cleanup_headers.c - tern-cleanup's header helpers (header.c), its
 * fix-ups (fixup.c: hops, From, Bcc, Message-ID, Date, Received) and its
 * envelope policy (validate.c) against a real config file.
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
#include <time.h>
#include <unistd.h>

#include "fixup.h"
#include "header.h"
#include "ipc.h"
#include "util.h"
#include "validate.h"

/* Builds a header list from "Name: value" strings ("\r\n " folds). */
static void
make_headers(struct header_list *h, const char *const *fields)
{
	header_list_init(h);
	for (; *fields != NULL; fields++) {
		size_t n = header_name_len(*fields, strlen(*fields));

		assert_true(n > 0);
		header_list_append(h, *fields, strlen(*fields), n);
	}
}

static void
test_names_and_unfolding(void **state)
{
	struct header_list h;
	const char *fields[] = { "Subject: hello\r\n  world  ", "SUBJECT : x",
	    "X-Empty:", NULL };
	char *v;

	(void)state;
	assert_int_equal(header_name_len("From: a", 7), 4);
	assert_int_equal(header_name_len("From : a", 8), 4);
	assert_int_equal(header_name_len("From a", 6), 0);
	assert_int_equal(header_name_len(": a", 3), 0);
	assert_int_equal(header_name_len("Fr\x01om: a", 8), 0);
	assert_int_equal(header_name_len(" From: a", 8), 0);
	make_headers(&h, fields);
	assert_int_equal(header_count(&h, "subject"), 2);
	v = header_value_unfolded(&h.v[0]);
	assert_string_equal(v, "hello  world");
	free(v);
	v = header_value_unfolded(&h.v[2]);
	assert_string_equal(v, "");
	free(v);
	header_list_continue(&h, "\tmore", 5);
	assert_string_equal(h.v[2].text, "X-Empty:\r\n\tmore");
	header_list_free(&h);
}

static void
test_mailbox_domain(void **state)
{
	static const struct {
		const char *value;
		const char *domain;
		size_t count;
	} cases[] = {
		{ "a@Example.Test", "example.test", 1 },
		{ "App <app@example.test>", "example.test", 1 },
		{ "\"Doe, John\" <j@x.test>, b@y.test", "x.test", 2 },
		{ "\"a@evil.test\" <j@good.test>", "good.test", 1 },
		{ "j@good.test (comment @evil.test)", "good.test", 1 },
		{ "(c) App (x@evil.test) <app@example.test>", "example.test", 1 },
		{ "Team: a@t.test, b@t.test;", "t.test", 2 },
		{ "undisclosed-recipients:;", NULL, 0 },
		{ "<@route.test:x@real.test>", "real.test", 1 },
		{ "\"quoted@local\"@q.test", "q.test", 1 },
		/* Angle brackets inside quotes are display text. */
		{ "\"<x@evil.test>\" <app@example.test>", "example.test", 1 },
		{ "\"a\\\"<x@evil.test>\" <app@example.test>", "example.test", 1 },
		{ "<\"a>b\"@example.test>", "example.test", 1 },
		{ "<@\":@\":a@example.test>", "example.test", 1 },
		{ "no address here", NULL, 1 },
		{ "", NULL, 0 },
	};
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = header_mailbox_domain(cases[i].value, buf, sizeof(buf));

		if (cases[i].domain == NULL) {
			if (rc != -1)
				fail_msg("'%s': got domain '%s'", cases[i].value, buf);
		} else {
			if (rc != 0 || strcmp(buf, cases[i].domain) != 0)
				fail_msg("'%s': expected '%s'", cases[i].value,
				    cases[i].domain);
		}
		assert_int_equal(header_mailbox_count(cases[i].value),
		    cases[i].count);
	}
}

static void
env_init(struct fixup_env *e, uint8_t source)
{
	memset(e, 0, sizeof(*e));
	e->source = source;
	e->hostname = "mail.tern.test";
	e->helo = "client.test";
	e->client_name = "client.test";
	e->client_addr = "192.0.2.7";
	e->tls = "";
	e->auth_user = "";
	e->sender = "app@example.test";
	e->single_rcpt = "r@dest.test";
	e->queue_id = "0123456789ABCDEF";
	e->now = 1700000000;
	e->unique = "u1";
}

static char *
written(const struct header_list *h, const struct fixup_result *r)
{
	char *s = xstrdup("");

	for (size_t i = 0; r->prepend != NULL && i < 1; i++) {
		char *t = xasprintf("%s%s", s, r->prepend);

		free(s);
		s = t;
	}
	for (size_t i = 0; i < h->n; i++) {
		char *t;

		if (h->v[i].removed)
			continue;
		t = xasprintf("%s%s\r\n", s, h->v[i].text);
		free(s);
		s = t;
	}
	{
		char *t = xasprintf("%s%s\r\n", s, r->append);

		free(s);
		s = t;
	}
	return s;
}

static void
out_cat(void *arg, const char *p, size_t n)
{
	char **s = arg;
	size_t len = strlen(*s);

	*s = xrealloc(*s, len + n + 1);
	memcpy(*s + len, p, n);
	(*s)[len + n] = '\0';
}

static void
test_fixups_added_and_removed(void **state)
{
	const char *fields[] = { "From: App <app@Example.Test>", "To: r@dest.test",
	    "Bcc: hidden@dest.test", "Resent-Bcc: h2@dest.test", "Subject: s",
	    NULL };
	struct header_list h;
	struct fixup_env e;
	struct fixup_result r;
	char *w, *out = xstrdup("");

	(void)state;
	make_headers(&h, fields);
	env_init(&e, CLEANUP_SOURCE_SUBMISSION);
	fixup_headers(&h, &e, &r);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.from_domain, "example.test");
	assert_string_equal(r.message_id, "<u1@mail.tern.test>");
	assert_null(r.prepend);
	r.prepend = fixup_received(&e);
	w = written(&h, &r);
	fixup_write_headers(&h, &r, out_cat, &out);
	assert_string_equal(w, out);
	assert_int_equal(fixup_headers_size(&h, &r), strlen(out));
	assert_null(strstr(out, "Bcc"));
	assert_non_null(strstr(out, "\r\nMessage-ID: <u1@mail.tern.test>\r\n"));
	assert_non_null(strstr(out, "\r\nDate: "));
	assert_true(strncmp(out, "Received: from client.test (client.test "
	    "[192.0.2.7])\r\n\tby mail.tern.test (tern) with ESMTP id "
	    "0123456789ABCDEF\r\n\tfor <r@dest.test>; ", 120) == 0);
	assert_true(strlen(out) > 4 &&
	    strcmp(out + strlen(out) - 4, "\r\n\r\n") == 0);
	free(w);
	free(out);
	fixup_result_free(&r);
	header_list_free(&h);
}

static void
test_refusals(void **state)
{
	const char *two_from[] = { "From: a@example.test", "from: b@example.test",
	    NULL };
	const char *no_from[] = { "Subject: x", NULL };
	struct header_list h;
	struct fixup_env e;
	struct fixup_result r;

	(void)state;
	make_headers(&h, two_from);
	env_init(&e, CLEANUP_SOURCE_SUBMISSION);
	fixup_headers(&h, &e, &r);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.status, "5.6.0");
	fixup_result_free(&r);
	header_list_free(&h);

	make_headers(&h, no_from);
	fixup_headers(&h, &e, &r);
	assert_int_equal(r.code, 550);
	fixup_result_free(&r);
	/* sendmail gets the envelope sender as From instead. */
	env_init(&e, CLEANUP_SOURCE_SENDMAIL);
	fixup_headers(&h, &e, &r);
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.append, "From: app@example.test\r\n"));
	assert_string_equal(r.from_domain, "example.test");
	fixup_result_free(&r);
	header_list_free(&h);

	/* 50 Received fields pass, 51 are a loop. */
	header_list_init(&h);
	header_list_append(&h, "From: a@example.test", 20, 4);
	for (int i = 0; i < 50; i++)
		header_list_append(&h, "Received: from x by y", 21, 8);
	env_init(&e, CLEANUP_SOURCE_SUBMISSION);
	fixup_headers(&h, &e, &r);
	assert_int_equal(r.code, 0);
	assert_int_equal(r.n_received, 50);
	fixup_result_free(&r);
	header_list_append(&h, "received: from x by y", 21, 8);
	fixup_headers(&h, &e, &r);
	assert_int_equal(r.code, 554);
	assert_string_equal(r.status, "5.4.6");
	fixup_result_free(&r);
	header_list_free(&h);
}

static void
test_inbound_is_left_alone(void **state)
{
	const char *fields[] = { "Subject: dsn", "Bcc: x@y.test", NULL };
	struct header_list h;
	struct fixup_env e;
	struct fixup_result r;

	(void)state;
	make_headers(&h, fields);
	env_init(&e, CLEANUP_SOURCE_INBOUND);
	fixup_headers(&h, &e, &r);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.append, "");
	assert_false(h.v[1].removed);
	fixup_result_free(&r);
	header_list_free(&h);
}

static void
test_received_is_safe(void **state)
{
	struct fixup_env e;
	char *s, *line, *save = NULL;
	char big[600];

	(void)state;
	env_init(&e, CLEANUP_SOURCE_SUBMISSION);
	memset(big, 'h', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	e.helo = "evil\r\nBcc: injected (x)";
	e.client_name = big;
	e.auth_user = "alice";
	e.tls = "TLSv1.3 TLS_AES_128_GCM_SHA256";
	e.smtputf8 = true;
	e.single_rcpt = NULL;
	s = fixup_received(&e);
	assert_null(strstr(s, "\r\nBcc"));
	assert_non_null(strstr(s, "from evil??Bcc:?injected??x? ("));
	assert_non_null(strstr(s, "(using TLSv1.3 TLS_AES_128_GCM_SHA256)"));
	assert_non_null(strstr(s, "(Authenticated sender: alice)"));
	assert_non_null(strstr(s, "with UTF8SMTPSA id 0123456789ABCDEF; "));
	for (line = strtok_r(s, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		assert_true(strlen(line) <= 998);
	free(s);

	env_init(&e, CLEANUP_SOURCE_SENDMAIL);
	e.auth_user = "uid=1000 user=alice";
	s = fixup_received(&e);
	assert_true(strncmp(s, "Received: by mail.tern.test (tern, from userid "
	    "1000)\r\n\tid 0123456789ABCDEF", 67) == 0);
	free(s);
	e.auth_user = "root";
	s = fixup_received(&e);
	assert_non_null(strstr(s, "(tern, from user root)"));
	free(s);

	env_init(&e, CLEANUP_SOURCE_BOUNCE);
	s = fixup_received(&e);
	assert_true(strncmp(s, "Received: by mail.tern.test (tern)\r\n\tid "
	    "0123456789ABCDEF\r\n\tfor <r@dest.test>; ", 72) == 0);
	free(s);
}

static void
test_date_format(void **state)
{
	char buf[64];

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	fixup_format_date(0, buf, sizeof(buf));
	assert_string_equal(buf, "Thu, 1 Jan 1970 00:00:00 +0000");
	setenv("TZ", "EST5", 1);
	tzset();
	fixup_format_date(1700000000, buf, sizeof(buf));
	assert_string_equal(buf, "Tue, 14 Nov 2023 17:13:20 -0500");
	unsetenv("TZ");
	tzset();
}

static struct tern_config *
load_config(void)
{
	char path[] = "/tmp/test_cleanup_headers.XXXXXX";
	int fd = mkstemp(path);
	const char *text = "[server]\nhostname = mail.tern.test\n"
	    "queue_dir = /tmp\nrun_dir = /tmp\n"
	    "[domain example.test]\nreturn_path = bounces.example.test\n";
	struct config_errors errs = { NULL, 0 };
	struct tern_config *cfg;

	assert_true(fd != -1);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	cfg = config_load(path, &errs);
	if (cfg == NULL)
		config_errors_print(&errs, stderr);
	config_errors_free(&errs);
	unlink(path);
	assert_non_null(cfg);
	return cfg;
}

static void
test_envelope_policy(void **state)
{
	struct tern_config *cfg = load_config();
	struct verdict v;
	struct address a;

	(void)state;
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_SUBMISSION,
	    "app@Example.Test", false, &v), 0);
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_SENDMAIL,
	    "b+x@bounces.example.test", false, &v), 0);
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_SUBMISSION, "",
	    false, &v), 0);
	/* The server's own host name: a local user's default sender, not
	 * a submission's. */
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_SENDMAIL,
	    "root@Mail.Tern.Test", false, &v), 0);
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_SUBMISSION,
	    "root@mail.tern.test", false, &v), -1);
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_BOUNCE, "", false,
	    &v), 0);
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_SUBMISSION,
	    "app@other.test", false, &v), -1);
	assert_int_equal(v.code, 553);
	assert_string_equal(v.status, "5.7.1");
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_HTTP,
	    "app@other.test", false, &v), -1);
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_INBOUND,
	    "mailer@other.test", false, &v), 0);
	assert_int_equal(validate_sender(cfg, CLEANUP_SOURCE_SUBMISSION,
	    "bad..dots@example.test", false, &v), -1);
	assert_string_equal(v.status, "5.1.7");
	assert_int_equal(validate_recipient("r@dest.test", false, &a, &v), 0);
	assert_int_equal(validate_recipient("rené@dest.test", false, &a, &v), -1);
	assert_int_equal(v.code, 501);
	assert_string_equal(v.status, "5.1.3");
	assert_int_equal(validate_recipient("rené@dest.test", true, &a, &v), 0);
	assert_int_equal(validate_recipient("a\r\nb@x.test", true, &a, &v), -1);
	assert_null(strchr(v.text, '\r'));
	config_free(cfg);
}

/* tern-smtpd's socket (in its jail) takes only what smtpd takes in; the
 * private socket, tern's own, takes every source. */
static void
test_sources_by_socket(void **state)
{
	struct verdict v;

	(void)state;
	assert_int_equal(validate_source(true, CLEANUP_SOURCE_SUBMISSION, &v), 0);
	assert_int_equal(v.code, 0);
	assert_int_equal(validate_source(true, CLEANUP_SOURCE_INBOUND, &v), 0);
	assert_int_equal(validate_source(true, CLEANUP_SOURCE_BOUNCE, &v), -1);
	assert_int_equal(v.code, 554);
	assert_string_equal(v.status, "5.7.0");
	assert_string_equal(v.text, "Source bounce not allowed on tern-smtpd's "
	    "socket");
	assert_int_equal(validate_source(true, CLEANUP_SOURCE_SENDMAIL, &v), -1);
	assert_int_equal(validate_source(true, CLEANUP_SOURCE_HTTP, &v), -1);
	assert_int_equal(validate_source(true, 0, &v), -1);
	assert_int_equal(validate_source(true, 200, &v), -1);
	assert_string_equal(v.text, "Source unknown not allowed on tern-smtpd's "
	    "socket");
	for (unsigned s = CLEANUP_SOURCE_SUBMISSION; s <= CLEANUP_SOURCE_HTTP; s++)
		assert_int_equal(validate_source(false, (uint8_t)s, &v), 0);
	assert_string_equal(cleanup_source_name(CLEANUP_SOURCE_SENDMAIL),
	    "sendmail");
	assert_string_equal(cleanup_source_name(CLEANUP_SOURCE_INBOUND),
	    "inbound");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_unfolding),
		cmocka_unit_test(test_mailbox_domain),
		cmocka_unit_test(test_fixups_added_and_removed),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_inbound_is_left_alone),
		cmocka_unit_test(test_received_is_safe),
		cmocka_unit_test(test_date_format),
		cmocka_unit_test(test_envelope_policy),
		cmocka_unit_test(test_sources_by_socket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
