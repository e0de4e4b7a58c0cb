/*
 * dsn.h - composing a delivery status notification (RFC 3464) for the
 * sender of a message: multipart/report; report-type=delivery-status
 * with a readable explanation, the message/delivery-status part
 * (per-message fields, then one group per recipient) and the returned
 * message (text/rfc822-headers, or message/rfc822 with RET=FULL when it
 * fits). Lines end in CRLF and never exceed 998 bytes; long fields are
 * folded. Pure: the caller gives every time, name and the boundary, so
 * the output is byte-for-byte reproducible (golden files in
 * tests/unit/golden). Used by tern-bounce.
 */
#ifndef TERN_BOUNCE_DSN_H
#define TERN_BOUNCE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dsn_action {
	DSN_ACTION_FAILED,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
};

/* One recipient the report is about. */
struct dsn_rcpt {
	const char *address;		/* Final-Recipient */
	const char *orcpt;		/* "rfc822;a@b" as given (ORCPT), "" none */
	enum dsn_action action;
	const char *status;		/* "5.1.1" */
	unsigned code;			/* SMTP reply code, 0: none */
	const char *text;		/* reply text or diagnostic, "" none */
	const char *remote_host;	/* "mx.b[192.0.2.1]:25", "" none */
	int64_t last_attempt;		/* unix seconds, 0 none */
	int64_t will_retry_until;	/* unix seconds, delays only, 0 none */
};

/* The report to compose. */
struct dsn_report {
	const char *reporting_mta;	/* our hostname */
	const char *postmaster;		/* From: "MAILER-DAEMON@host" */
	const char *to;			/* the original envelope sender */
	const char *envid;		/* Original-Envelope-Id, "" none */
	int64_t arrival;		/* Arrival-Date, unix seconds */
	int64_t date;			/* Date of the report */
	const char *message_id;		/* of the report, without <> */
	const char *boundary;		/* MIME boundary, unique per report */
	bool return_full;		/* RET=FULL: the whole message */
	size_t full_limit;		/* above this, headers only */
	const char *original;		/* the original message (CRLF) */
	size_t original_len;
	const struct dsn_rcpt *rcpts;
	size_t n_rcpts;			/* all with the same action */
};

/* Composes the report; *eightbit says it needs 8BITMIME. Allocated. */
char *dsn_compose(const struct dsn_report *r, size_t *len, bool *eightbit);

/* "Thu, 26 Nov 2026 23:42:10 +0000" (RFC 5322, UTC, no locale). */
void dsn_format_date(int64_t t, char *buf, size_t size);

#define DSN_LINE_MAX	998

#endif
