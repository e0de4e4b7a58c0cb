/*
 * address.h - RFC 5321 envelope addresses: paths ("<a@b>", with an
 * ignored source route) and mailboxes (dot-string or quoted local part,
 * domain name or address literal), with the SMTPUTF8 extension (RFC
 * 6531: UTF-8 in local parts and U-label domains) and the length limits
 * of RFC 5321 section 4.5.3.1. Pure functions; used by tern-smtpd at
 * MAIL/RCPT and by tern-cleanup on every envelope it receives.
 */
#ifndef TERN_ADDRESS_H
#define TERN_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define ADDRESS_LOCAL_MAX	64	/* octets in a local part */
#define ADDRESS_DOMAIN_MAX	255	/* octets in a domain */
#define ADDRESS_LABEL_MAX	63	/* octets in a domain label */
#define ADDRESS_PATH_MAX	256	/* octets in a path, with < and > */
#define ADDRESS_MAILBOX_MAX	(ADDRESS_PATH_MAX - 2)

/* Parsing flags. */
#define ADDRESS_UTF8		0x01	/* SMTPUTF8: UTF-8 allowed (RFC 6531) */
#define ADDRESS_ALLOW_NULL	0x02	/* the null path "<>" is accepted */

/* A parsed mailbox; both parts as written (a quoted local part keeps
 * its quotes), so local@domain is the address to use. */
struct address {
	char local[ADDRESS_LOCAL_MAX + 1];
	char domain[ADDRESS_DOMAIN_MAX + 1];
	bool is_null;			/* the null path: both parts empty */
	bool is_quoted;			/* the local part is a quoted string */
	bool is_literal;		/* the domain is an address literal */
	bool has_utf8;			/* non-ASCII in either part */
};

/*
 * Parses a mailbox "local@domain" (no angle brackets) filling the whole
 * of s[0..len). With ADDRESS_ALLOW_NULL the empty string is the null
 * path. Returns 0, or -1 with *why saying what is wrong.
 */
int address_parse_mailbox(const char *s, size_t len, unsigned flags,
    struct address *out, const char **why);

/*
 * Parses a path at the start of s: "<mailbox>", "<@route,@route:mailbox>"
 * (the route is ignored, RFC 5321 section 4.1.2) or "<>" with
 * ADDRESS_ALLOW_NULL. *end points past the closing '>'. 0 or -1 (*why).
 */
int address_parse_path(const char *s, size_t len, unsigned flags,
    struct address *out, size_t *end, const char **why);

/* Writes local@domain ("" for the null path); the length written. */
size_t address_format(const struct address *a, char *buf, size_t size);

/* True when s[0..len) is a valid domain name (LDH labels, or U-labels
 * with ADDRESS_UTF8) or address literal ("[192.0.2.1]", "[IPv6:...]"). */
bool is_address_domain(const char *s, size_t len, unsigned flags);

/* True when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or
 * code points beyond U+10FFFF). */
bool is_utf8_valid(const char *s, size_t len);

#endif
