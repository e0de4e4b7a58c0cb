/*
 * test_address.c - table-driven tests of the RFC 5321 path and mailbox
 * parser (src/lib/address.c): dot-strings, quoted local parts, address
 * literals, SMTPUTF8, source routes, the null path and length limits.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "address.h"

struct mailbox_case {
	const char *in;
	unsigned flags;
	bool ok;
	const char *local;
	const char *domain;
};

static const struct mailbox_case mailbox_cases[] = {
	{ "user@example.test", 0, true, "user", "example.test" },
	{ "first.last+tag@sub.example.test", 0, true, "first.last+tag",
	    "sub.example.test" },
	{ "!#$%&'*+-/=?^_`{|}~@x.test", 0, true, "!#$%&'*+-/=?^_`{|}~", "x.test" },
	{ "\"john doe\"@example.test", 0, true, "\"john doe\"", "example.test" },
	{ "\"a\\\"b@c\"@example.test", 0, true, "\"a\\\"b@c\"", "example.test" },
	{ "\"\"@example.test", 0, true, "\"\"", "example.test" },
	{ "user@[192.0.2.1]", 0, true, "user", "[192.0.2.1]" },
	{ "user@[IPv6:2001:db8::1]", 0, true, "user", "[IPv6:2001:db8::1]" },
	{ "user@[x-tag:abc]", 0, true, "user", "[x-tag:abc]" },
	{ "user@localhost", 0, true, "user", "localhost" },
	{ "user@123.test", 0, true, "user", "123.test" },
	{ "josé@example.test", ADDRESS_UTF8, true, "josé", "example.test" },
	{ "user@bücher.test", ADDRESS_UTF8, true, "user", "bücher.test" },
	{ "\"jo sé\"@example.test", ADDRESS_UTF8, true, "\"jo sé\"", "example.test" },
	{ "", ADDRESS_ALLOW_NULL, true, "", "" },
	/* refused */
	{ "", 0, false, NULL, NULL },
	{ "josé@example.test", 0, false, NULL, NULL },
	{ "user@bücher.test", 0, false, NULL, NULL },
	{ "jos\xc3@example.test", ADDRESS_UTF8, false, NULL, NULL },
	{ "\xc0\xaf@example.test", ADDRESS_UTF8, false, NULL, NULL },
	{ "user", 0, false, NULL, NULL },
	{ "@example.test", 0, false, NULL, NULL },
	{ "user@", 0, false, NULL, NULL },
	{ ".user@example.test", 0, false, NULL, NULL },
	{ "user.@example.test", 0, false, NULL, NULL },
	{ "us..er@example.test", 0, false, NULL, NULL },
	{ "us er@example.test", 0, false, NULL, NULL },
	{ "user@@example.test", 0, false, NULL, NULL },
	{ "user@-example.test", 0, false, NULL, NULL },
	{ "user@example-.test", 0, false, NULL, NULL },
	{ "user@example..test", 0, false, NULL, NULL },
	{ "user@example.test.", 0, false, NULL, NULL },
	{ "user@exa_mple.test", 0, false, NULL, NULL },
	{ "user@[192.0.2.300]", 0, false, NULL, NULL },
	{ "user@[IPv6:zz::1]", 0, false, NULL, NULL },
	{ "user@[1.2.3.4", 0, false, NULL, NULL },
	{ "\"unterminated@example.test", 0, false, NULL, NULL },
	{ "\"a\rb\"@example.test", 0, false, NULL, NULL },
	{ "a\r\nb@example.test", 0, false, NULL, NULL },
	{ "user@exam ple.test", 0, false, NULL, NULL },
};

static void
test_mailboxes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(mailbox_cases) / sizeof(mailbox_cases[0]);
	    i++) {
		const struct mailbox_case *c = &mailbox_cases[i];
		struct address a;
		const char *why = NULL;
		int rc = address_parse_mailbox(c->in, strlen(c->in), c->flags, &a,
		    &why);

		if (rc != (c->ok ? 0 : -1))
			fail_msg("'%s': expected %s, got %s (%s)", c->in,
			    c->ok ? "ok" : "refusal", rc == 0 ? "ok" : "refusal",
			    why ? why : "");
		if (!c->ok) {
			assert_non_null(why);
			continue;
		}
		assert_string_equal(a.local, c->local);
		assert_string_equal(a.domain, c->domain);
	}
}

static void
test_length_limits(void **state)
{
	char buf[600];
	struct address a;
	const char *why;

	(void)state;
	/* 64 octets of local part are fine, 65 are not. */
	memset(buf, 'a', 64);
	strcpy(buf + 64, "@example.test");
	assert_int_equal(address_parse_mailbox(buf, strlen(buf), 0, &a, &why), 0);
	memset(buf, 'a', 65);
	strcpy(buf + 65, "@example.test");
	assert_int_equal(address_parse_mailbox(buf, strlen(buf), 0, &a, &why), -1);
	/* A label of 63 octets is fine, 64 is not. */
	snprintf(buf, sizeof(buf), "u@%.*s.test", 63,
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	assert_int_equal(address_parse_mailbox(buf, strlen(buf), 0, &a, &why), 0);
	snprintf(buf, sizeof(buf), "u@%.*s.test", 64,
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	assert_int_equal(address_parse_mailbox(buf, strlen(buf), 0, &a, &why), -1);
	/* A whole mailbox over 254 octets is refused. */
	strcpy(buf, "u@");
	for (int i = 0; i < 5; i++)
		strcat(buf, "ccccccccccccccccccccccccccccccccccccccccccccccccc.");
	strcat(buf, "test");
	assert_true(strlen(buf) > 254);
	assert_int_equal(address_parse_mailbox(buf, strlen(buf), 0, &a, &why), -1);
	assert_string_equal(why, "address longer than 254 octets");
}

static void
test_paths(void **state)
{
	struct address a;
	const char *why = NULL;
	size_t end = 0;
	const char *s;

	(void)state;
	s = "<user@example.test> SIZE=100";
	assert_int_equal(address_parse_path(s, strlen(s), 0, &a, &end, &why), 0);
	assert_int_equal(end, 19);
	assert_string_equal(a.domain, "example.test");

	s = "<>";
	assert_int_equal(address_parse_path(s, 2, 0, &a, &end, &why), -1);
	assert_int_equal(address_parse_path(s, 2, ADDRESS_ALLOW_NULL, &a, &end,
	    &why), 0);
	assert_true(a.is_null);
	assert_int_equal(end, 2);

	s = "<@relay.test,@other.test:user@example.test>";
	assert_int_equal(address_parse_path(s, strlen(s), 0, &a, &end, &why), 0);
	assert_string_equal(a.local, "user");
	assert_int_equal(end, strlen(s));

	s = "<\"a>b\"@example.test>";
	assert_int_equal(address_parse_path(s, strlen(s), 0, &a, &end, &why), 0);
	assert_string_equal(a.local, "\"a>b\"");

	s = "<user@[IPv6:::1]>";
	assert_int_equal(address_parse_path(s, strlen(s), 0, &a, &end, &why), 0);
	assert_true(a.is_literal);

	s = "user@example.test";
	assert_int_equal(address_parse_path(s, strlen(s), 0, &a, &end, &why), -1);
	s = "<user@example.test";
	assert_int_equal(address_parse_path(s, strlen(s), 0, &a, &end, &why), -1);
	s = "<@bad_route:user@example.test>";
	assert_int_equal(address_parse_path(s, strlen(s), 0, &a, &end, &why), -1);
}

static void
test_format_and_utf8(void **state)
{
	struct address a;
	const char *why;
	char buf[300];

	(void)state;
	assert_int_equal(address_parse_mailbox("\"x y\"@Example.Test", 18, 0, &a,
	    &why), 0);
	assert_int_equal(address_format(&a, buf, sizeof(buf)), 18);
	assert_string_equal(buf, "\"x y\"@Example.Test");
	assert_true(is_utf8_valid("caf\xc3\xa9", 5));
	assert_false(is_utf8_valid("\xed\xa0\x80", 3));	/* a surrogate */
	assert_false(is_utf8_valid("\xf4\x90\x80\x80", 4));	/* > U+10FFFF */
	assert_false(is_utf8_valid("\xe0\x80\xaf", 3));	/* overlong */
	assert_true(is_address_domain("[192.0.2.1]", 11, 0));
	assert_false(is_address_domain("", 0, 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mailboxes),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_format_and_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
