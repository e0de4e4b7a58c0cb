/*
 * test_config.c - unit tests for the config parser: every key type, the
 * defaults, and every kind of error with its line number.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "resolver.h"

static char tmpdir[] = "/tmp/tern-config-test-XXXXXX";

/* Writes text to a file in the test directory and returns its path. */
static char *
write_file(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct tern_config *
load_text(const char *text, struct config_errors *errs)
{
	char *path = write_file("tern.conf", text);
	struct tern_config *cfg = config_load(path, errs);

	free(path);
	return cfg;
}

/* True when some error is on line `line` and mentions `needle`. */
static bool
has_error(const struct config_errors *errs, int line, const char *needle)
{
	for (size_t i = 0; i < errs->n; i++)
		if (errs->v[i].line == line && strstr(errs->v[i].message, needle))
			return true;
	return false;
}

static void
test_defaults(void **state)
{
	struct config_errors errs;
	struct tern_config *cfg = load_text("[server]\nhostname = mx.example.test\n", &errs);

	(void)state;
	assert_non_null(cfg);
	assert_string_equal(cfg->server.hostname, "mx.example.test");
	assert_string_equal(cfg->server.queue_dir, "/var/spool/tern");
	assert_int_equal(cfg->server.log, LOG_TARGET_SYSLOG);
	assert_int_equal(cfg->delivery.smtp_port, 25);
	assert_int_equal(cfg->delivery.n_retry_schedule, 7);
	assert_int_equal(cfg->delivery.retry_schedule[0], 300);
	assert_int_equal(cfg->delivery.retry_schedule[6], 8 * 3600);
	assert_int_equal(cfg->delivery.max_queue_lifetime, 5 * 86400);
	assert_int_equal(cfg->delivery.tls, TLS_POLICY_OPPORTUNISTIC);
	assert_int_equal(cfg->server.message_size_limit, 10 * 1024 * 1024);
	assert_int_equal(cfg->n_listeners, 0);
	config_free(cfg);
}

static void
test_full_example(void **state)
{
	struct config_errors errs;
	struct tern_config *cfg;
	char *cert = write_file("cert.pem", "x");
	char *key = write_file("key.pem", "x");
	char *dkim = write_file("dkim.pem", "x");
	char *text = xasprintf(
	    "; comment\n"
	    "[server]\n"
	    "hostname = Mail.Example.TEST\n"
	    "queue_dir = queue\n"
	    "log = stderr            ; inline comment\n"
	    "message_size_limit = 20M\n"
	    "\n"
	    "[listen submission]\n"
	    "address = 127.0.0.1:2587\n"
	    "mode = submission\n"
	    "tls_cert = %s\n"
	    "tls_key = %s\n"
	    "trusted_networks = 127.0.0.0/8 ::1/128\n"
	    "   10.0.0.0/8\n"
	    "\n"
	    "[listen inbound]\n"
	    "address = [::1]:2525\n"
	    "mode = inbound\n"
	    "\n"
	    "[delivery]\n"
	    "dns_servers = 127.0.0.1@5353\n"
	    "retry_schedule = 1s 2s 1m 1h 1d\n"
	    "tls = required\n"
	    "\n"
	    "[domain Example.test]\n"
	    "dkim_selector = s1 s2\n"
	    "dkim_key = %s %s\n"
	    "return_path = bounces.example.test\n"
	    "\n"
	    "[destination gmail.com]\n"
	    "max_connections = 10\n"
	    "rate = 600/m\n", cert, key, dkim, dkim);
	struct sockaddr_in sin;

	(void)state;
	cfg = load_text(text, &errs);
	config_errors_print(&errs, stderr);
	assert_non_null(cfg);
	assert_string_equal(cfg->server.hostname, "mail.example.test");
	assert_true(strncmp(cfg->server.queue_dir, tmpdir, strlen(tmpdir)) == 0);
	assert_int_equal(cfg->server.log, LOG_TARGET_STDERR);
	assert_int_equal(cfg->server.message_size_limit, 20 * 1024 * 1024);
	assert_int_equal(cfg->n_listeners, 2);
	assert_string_equal(cfg->listeners[0].name, "submission");
	assert_int_equal(cfg->listeners[0].mode, LISTEN_SUBMISSION);
	assert_int_equal(cfg->listeners[0].n_trusted_networks, 3);
	assert_int_equal(cfg->listeners[1].mode, LISTEN_INBOUND);
	assert_int_equal(cfg->listeners[1].address.ss.ss_family, AF_INET6);
	assert_int_equal(cfg->delivery.n_dns_servers, 1);
	assert_string_equal(cfg->delivery.dns_servers[0], "127.0.0.1@5353");
	assert_int_equal(cfg->delivery.n_retry_schedule, 5);
	assert_int_equal(cfg->delivery.retry_schedule[4], 86400);
	assert_int_equal(cfg->delivery.tls, TLS_POLICY_REQUIRED);
	assert_non_null(config_find_domain(cfg, "EXAMPLE.test"));
	assert_int_equal(config_find_domain(cfg, "example.test")->n_dkim, 2);
	assert_non_null(config_find_return_path_domain(cfg, "bounces.example.test"));
	assert_null(config_find_domain(cfg, "other.test"));
	assert_int_equal(config_find_destination(cfg, "gmail.com")->rate_count, 600);
	assert_int_equal(config_find_destination(cfg, "gmail.com")->rate_period, 60);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
	assert_true(is_addr_in_cidrs((struct sockaddr *)&sin,
	    cfg->listeners[0].trusted_networks, cfg->listeners[0].n_trusted_networks));
	inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
	assert_false(is_addr_in_cidrs((struct sockaddr *)&sin,
	    cfg->listeners[0].trusted_networks, cfg->listeners[0].n_trusted_networks));
	config_free(cfg);
	free(text);
	free(cert);
	free(key);
	free(dkim);
}

/* Each bad line is reported with its own line number. */
static void
test_errors_have_lines(void **state)
{
	struct config_errors errs;
	struct tern_config *cfg = load_text(
	    "[server]\n"				/* 1 */
	    "bogus = 1\n"				/* 2 */
	    "log = journal\n"				/* 3 */
	    "[listen a]\n"				/* 4 */
	    "address = 127.0.0.1:99999\n"		/* 5 */
	    "mode = submission\n"			/* 6 */
	    "tls_cert = /nonexistent/cert.pem\n"	/* 7 */
	    "[delivery]\n"				/* 8 */
	    "retry_schedule = 5m 10x\n"			/* 9 */
	    "smtp_port = 0\n"				/* 10 */
	    "[listen a]\n"				/* 11 */
	    "[server]\n"				/* 12 */
	    "[nosuch]\n"				/* 13 */
	    "this line has no equals sign\n"		/* 14 */
	    "[delivery\n"				/* 15 */
	    "[domain example.test]\n"			/* 16 */
	    "dkim_selector = s1 s2\n"			/* 17 */
	    "return_path = not a domain\n"		/* 18 */
	    "return_path = b.example.test\n",		/* 19 */
	    &errs);

	(void)state;
	assert_null(cfg);
	assert_true(has_error(&errs, 2, "unknown key 'bogus'"));
	assert_true(has_error(&errs, 3, "'journal' is not one of"));
	assert_true(has_error(&errs, 5, "not a numeric address and port"));
	assert_true(has_error(&errs, 7, "/nonexistent/cert.pem"));
	assert_true(has_error(&errs, 9, "'10x' is not a duration"));
	assert_true(has_error(&errs, 10, "'0' is not a number from 1 to 65535"));
	assert_true(has_error(&errs, 11, "duplicate listener"));
	assert_true(has_error(&errs, 12, "appears twice"));
	assert_true(has_error(&errs, 13, "unknown section"));
	assert_true(has_error(&errs, 14, "expected 'key = value'"));
	assert_true(has_error(&errs, 15, "closing ']'"));
	assert_true(has_error(&errs, 16, "they pair up"));
	assert_true(has_error(&errs, 18, "not a valid domain name"));
	assert_true(has_error(&errs, 19, "duplicate key 'return_path'"));
	config_errors_free(&errs);
}

static void
test_listener_rules(void **state)
{
	struct config_errors errs;
	struct tern_config *cfg = load_text(
	    "[listen a]\n"				/* 1 */
	    "address = 127.0.0.1:2525\n"
	    "mode = smtps\n"
	    "[listen b]\n"				/* 4 */
	    "address = 127.0.0.1:2525\n"
	    "mode = inbound\n"
	    "trusted_networks = 10.0.0.0/8\n"
	    "[listen c]\n"				/* 8 */
	    "mode = submission\n"
	    "trusted_networks = 10.0.0.0/33\n",	/* 10 */
	    &errs);

	(void)state;
	assert_null(cfg);
	assert_true(has_error(&errs, 1, "smtps mode and needs tls_cert"));
	assert_true(has_error(&errs, 4, "uses address 127.0.0.1:2525"));
	assert_true(has_error(&errs, 4, "inbound never relays"));
	assert_true(has_error(&errs, 8, "needs an address"));
	assert_true(has_error(&errs, 10, "is not a network"));
	config_errors_free(&errs);
}

static void
test_long_line_and_continuation(void **state)
{
	struct config_errors errs;
	char text[1024];
	struct tern_config *cfg;

	(void)state;
	snprintf(text, sizeof(text), "[server]\nhostname = %0300d\n", 0);
	cfg = load_text(text, &errs);
	assert_null(cfg);
	assert_true(has_error(&errs, 2, "longer than"));
	config_errors_free(&errs);

	cfg = load_text("[server]\nhostname = a.test\n   b.test\n", &errs);
	assert_null(cfg);
	assert_true(has_error(&errs, 3, "takes one value"));
	config_errors_free(&errs);

	cfg = load_text("[delivery]\nretry_schedule = 1m\n  2m 3m\n", &errs);
	assert_non_null(cfg);
	assert_int_equal(cfg->delivery.n_retry_schedule, 3);
	assert_int_equal(cfg->delivery.retry_schedule[2], 180);
	config_free(cfg);
}

static void
test_missing_file(void **state)
{
	struct config_errors errs;
	struct tern_config *cfg = config_load("/nonexistent/tern.conf", &errs);

	(void)state;
	assert_null(cfg);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.v[0].message, "cannot open"));
	config_errors_free(&errs);
}

/* A DKIM key file may be missing: tern-signer reports it, not the config. */
static void
test_missing_dkim_key_is_allowed(void **state)
{
	struct config_errors errs;
	struct tern_config *cfg;
	const struct cfg_domain *d;

	(void)state;
	cfg = load_text("[domain example.test]\n"
	    "dkim_selector = s1\n"
	    "dkim_key = keys/absent.pem\n", &errs);
	assert_non_null(cfg);
	d = config_find_domain(cfg, "example.test");
	assert_non_null(d);
	assert_int_equal(d->n_dkim_keys, 1);
	/* Resolved against the config's folder like any other path. */
	assert_non_null(strstr(d->dkim_keys[0], "/keys/absent.pem"));
	assert_int_equal(d->dkim_keys[0][0], '/');
	config_free(cfg);
}

/* The four canonicalizations by name, the default, and a bad value's line. */
static void
test_dkim_canonicalization(void **state)
{
	static const struct {
		const char *name;
		enum dkim_canonicalization value;
	} canons[] = {
		{ "relaxed/relaxed", CANON_RELAXED_RELAXED },
		{ "relaxed/simple", CANON_RELAXED_SIMPLE },
		{ "simple/simple", CANON_SIMPLE_SIMPLE },
		{ "simple/relaxed", CANON_SIMPLE_RELAXED },
	};
	struct config_errors errs;
	struct tern_config *cfg;
	char *text;

	(void)state;
	for (size_t i = 0; i < sizeof(canons) / sizeof(canons[0]); i++) {
		text = xasprintf("[domain example.test]\n"
		    "dkim_canonicalization = %s\n", canons[i].name);
		cfg = load_text(text, &errs);
		free(text);
		assert_non_null(cfg);
		assert_int_equal(config_find_domain(cfg, "example.test")->
		    dkim_canonicalization, canons[i].value);
		config_free(cfg);
	}
	cfg = load_text("[domain example.test]\n", &errs);
	assert_non_null(cfg);
	assert_int_equal(config_find_domain(cfg, "example.test")->
	    dkim_canonicalization, CANON_RELAXED_RELAXED);
	config_free(cfg);
	cfg = load_text("[domain example.test]\n"
	    "dkim_selector = s1\n"
	    "dkim_canonicalization = simple\n", &errs);
	assert_null(cfg);
	assert_true(has_error(&errs, 3, "'simple' is not one of: "
	    "relaxed/relaxed relaxed/simple simple/simple simple/relaxed"));
	config_errors_free(&errs);
}

static void
test_value_parsers(void **state)
{
	int64_t d;
	uint64_t sz;
	struct cfg_cidr net;
	struct cfg_sockaddr sa;

	(void)state;
	assert_int_equal(config_parse_duration("90", &d), 0);
	assert_int_equal(d, 90);
	assert_int_equal(config_parse_duration("2h", &d), 0);
	assert_int_equal(d, 7200);
	assert_int_equal(config_parse_duration("1w", &d), 0);
	assert_int_equal(d, 7 * 86400);
	assert_int_equal(config_parse_duration("h", &d), -1);
	assert_int_equal(config_parse_duration("-1s", &d), -1);
	assert_int_equal(config_parse_duration("1.5h", &d), -1);
	assert_int_equal(config_parse_duration("99999999999999999999d", &d), -1);
	assert_int_equal(config_parse_size("10K", &sz), 0);
	assert_int_equal(sz, 10240);
	assert_int_equal(config_parse_size("1G", &sz), 0);
	assert_int_equal(sz, 1024 * 1024 * 1024);
	assert_int_equal(config_parse_size("1T", &sz), -1);
	assert_int_equal(config_parse_cidr("192.0.2.0/24", &net), 0);
	assert_int_equal(net.prefix, 24);
	assert_int_equal(config_parse_cidr("2001:db8::/32", &net), 0);
	assert_int_equal(net.family, AF_INET6);
	assert_int_equal(config_parse_cidr("192.0.2.1", &net), 0);
	assert_int_equal(net.prefix, 32);
	assert_int_equal(config_parse_cidr("192.0.2.0/", &net), -1);
	assert_int_equal(config_parse_cidr("example.com/8", &net), -1);
	assert_int_equal(config_parse_sockaddr("*:25", &sa), 0);
	assert_int_equal(config_parse_sockaddr("[::]:587", &sa), 0);
	assert_int_equal(sa.ss.ss_family, AF_INET6);
	assert_int_equal(config_parse_sockaddr("::1:25", &sa), -1);
	assert_int_equal(config_parse_sockaddr("mail.example.com:25", &sa), -1);
	assert_int_equal(config_parse_sockaddr("127.0.0.1", &sa), -1);
	assert_int_equal(config_parse_sockaddr("127.0.0.1:0", &sa), -1);
}

/* dns_servers: what tern-smtp, ternctl and check-config all read. */
static void
test_dns_servers(void **state)
{
	struct config_errors errs;
	struct tern_config *cfg;
	char out[64];

	(void)state;
	assert_true(resolver_forwarder_text("127.0.0.1", out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1");
	assert_true(resolver_forwarder_text("127.0.0.1:5353", out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1@5353");
	assert_true(resolver_forwarder_text("127.0.0.1@5353", out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1@5353");
	assert_true(resolver_forwarder_text("2001:db8::1", out, sizeof(out)));
	assert_string_equal(out, "2001:db8::1");
	assert_true(resolver_forwarder_text("2001:db8::1@53", out, sizeof(out)));
	assert_string_equal(out, "2001:db8::1@53");
	assert_false(resolver_forwarder_text("ns.example.com", out, sizeof(out)));
	assert_false(resolver_forwarder_text("127.0.0.1:0", out, sizeof(out)));
	assert_false(resolver_forwarder_text("127.0.0.1@65536", out, sizeof(out)));
	assert_false(resolver_forwarder_text("127.0.0.1:53x", out, sizeof(out)));
	assert_false(resolver_forwarder_text("@53", out, sizeof(out)));
	assert_false(resolver_forwarder_text("", out, sizeof(out)));
	assert_false(resolver_forwarder_text("127.0.0.1@5353", out, 8));

	cfg = load_text("[server]\nhostname = mx.example.test\n"
	    "[delivery]\ndns_servers = 127.0.0.1:5353 ::1\n", &errs);
	assert_non_null(cfg);
	assert_int_equal(cfg->delivery.n_dns_servers, 2);
	config_free(cfg);
	cfg = load_text("[server]\nhostname = mx.example.test\n\n"
	    "[delivery]\nsmtp_port = 2525\ndns_servers = 127.0.0.1 garbage!!\n",
	    &errs);
	assert_null(cfg);
	assert_true(has_error(&errs, 4, "'garbage!!' is not a resolver address"));
	config_errors_free(&errs);
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
	int rc;

	(void)state;
	rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_example),
		cmocka_unit_test(test_errors_have_lines),
		cmocka_unit_test(test_listener_rules),
		cmocka_unit_test(test_long_line_and_continuation),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_missing_dkim_key_is_allowed),
		cmocka_unit_test(test_dkim_canonicalization),
		cmocka_unit_test(test_value_parsers),
		cmocka_unit_test(test_dns_servers),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
