/*
 * smtp_parse.h - parsing of SMTP command lines for tern-smtpd: the verb,
 * MAIL FROM and RCPT TO with their ESMTP parameters (SIZE, BODY,
 * SMTPUTF8, RET, ENVID, AUTH, NOTIFY, ORCPT), xtext (RFC 3461) and
 * base64 for AUTH. Pure functions on untrusted input; no privilege.
 */
#ifndef TERN_SMTP_PARSE_H
#define TERN_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_address.h"

#define SMTP_ENVID_MAX		100
#define SMTP_ORCPT_MAX		500

/* MAIL FROM: the sender and its parameters. */
struct smtp_mail {
	char sender[SMTP_ADDRESS_MAX + 1];	/* "" for the null sender */
	uint64_t size;				/* SIZE=, 0 none */
	uint8_t body;				/* enum cleanup_body */
	bool smtputf8;
	uint8_t ret;				/* enum cleanup_ret */
	char envid[SMTP_ENVID_MAX + 1];		/* decoded, "" none */
};

/* RCPT TO: one recipient and its DSN parameters. */
struct smtp_rcpt {
	char address[SMTP_ADDRESS_MAX + 1];
	uint8_t notify;				/* CLEANUP_NOTIFY_* bits */
	char orcpt[SMTP_ORCPT_MAX + 1];		/* "rfc822;a@b" decoded, "" none */
};

/*
 * Splits a command line (without CRLF) in place into the verb and its
 * arguments (leading spaces skipped, "" when none). Returns -1 when the
 * verb is empty or not made of letters.
 */
int smtp_split_command(char *line, char **verb, char **args);

/*
 * Parses the arguments of MAIL ("FROM:<a@b> SIZE=10 ..."). Returns 0, or
 * -1 with *reply set to the full SMTP reply ("501 5.5.4 ...").
 */
int smtp_parse_mail(const char *args, struct smtp_mail *out,
    const char **reply);

/* Parses the arguments of RCPT; utf8 when the transaction has SMTPUTF8. */
int smtp_parse_rcpt(const char *args, bool utf8, struct smtp_rcpt *out,
    const char **reply);

/*
 * Decodes xtext s[0..len) into out (NUL-terminated). Fails on a bad
 * "+XX", on characters outside xtext and on any control character
 * (CR, LF, NUL) in the decoded text: those must never reach a header.
 */
int xtext_decode(const char *s, size_t len, char *out, size_t outsize);

/* Decodes base64 (AUTH); returns the decoded length or -1. The output
 * is NUL-terminated and needs outsize >= 3 * strlen(s) / 4 + 1. */
long smtp_base64_decode(const char *s, unsigned char *out, size_t outsize);

#endif
