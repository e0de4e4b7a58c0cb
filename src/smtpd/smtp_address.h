/*
 * smtp_address.h - RFC 5321 paths and mailboxes as tern-smtpd takes them
 * at MAIL and RCPT: the shared parser (address.h: quoted local parts,
 * address literals, UTF-8 with SMTPUTF8, source routes dropped) plus
 * "<postmaster>", a domain in lower case and relay tricks. Pure
 * functions on untrusted input; no privilege.
 */
#ifndef TERN_SMTP_ADDRESS_H
#define TERN_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX		64
#define SMTP_DOMAIN_MAX		255
#define SMTP_ADDRESS_MAX	(SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX)

/* What a path may be. */
#define SMTP_PATH_NULL_OK	0x01	/* "<>" (MAIL FROM) */
#define SMTP_PATH_POSTMASTER_OK	0x02	/* "<postmaster>" without a domain (RCPT) */
#define SMTP_PATH_UTF8		0x04	/* UTF-8 in local part and domain */

/*
 * Parses a path "<...>" starting at s. On success writes the mailbox
 * ("" for the null path; local@domain with the domain in lower case and
 * any source route dropped) to out (SMTP_ADDRESS_MAX + 1 bytes), sets
 * *end just past '>' and returns 0. Otherwise returns -1 and *why names
 * the problem.
 */
int smtp_path_parse(const char *s, unsigned flags, char *out, size_t outsize,
    const char **end, const char **why);

/* Parses a bare mailbox (no angle brackets), as in ORCPT; 0 or -1. */
int smtp_mailbox_parse(const char *s, size_t len, unsigned flags, char *out,
    size_t outsize, const char **why);

/* The domain of a parsed mailbox, or NULL when it has none. */
const char *smtp_address_domain(const char *mailbox);

/* True when the local part carries a relay trick: '%', '!', or a quoted
 * '@' (a@b@c cannot parse at all). */
bool is_smtp_relay_trick(const char *mailbox);

/* True when the string holds a byte >= 0x80. */
bool has_non_ascii(const char *s);

#endif
