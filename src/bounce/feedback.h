/*
 * feedback.h - parsing mail that arrives at a return path address:
 * an RFC 3464 DSN (multipart/report; report-type=delivery-status), an
 * RFC 5965 ARF report (report-type=feedback-report; Feedback-Type abuse
 * or fraud is a complaint), or a common non-standard bounce (an SMTP or
 * enhanced status code and an address found in the text). The input is
 * untrusted: every length is bounded, nothing recurses without limit;
 * fuzzed by tests/fuzz/fuzz_feedback.c. Pure; used by tern-bounce.
 */
#ifndef TERN_BOUNCE_FEEDBACK_H
#define TERN_BOUNCE_FEEDBACK_H

#include <stddef.h>

enum feedback_kind {
	FEEDBACK_NONE = 0,
	FEEDBACK_FAILED,		/* a bounce: Action failed, or a 5xx text */
	FEEDBACK_DELAYED,		/* Action delayed, or a 4xx text */
	FEEDBACK_DELIVERED,		/* Action delivered, relayed or expanded */
	FEEDBACK_COMPLAINT,		/* ARF abuse or fraud */
	FEEDBACK_OTHER_REPORT,		/* another ARF type (not-spam, virus...) */
};

enum feedback_format {
	FEEDBACK_FMT_DSN = 1,
	FEEDBACK_FMT_ARF,
	FEEDBACK_FMT_TEXT,		/* non-standard bounce text */
};

#define FEEDBACK_ADDR_MAX	500
#define FEEDBACK_MAX_ITEMS	100
#define FEEDBACK_MAX_INPUT	(4 * 1024 * 1024)	/* bytes looked at */

/* One recipient a report is about. */
struct feedback_item {
	enum feedback_kind kind;
	enum feedback_format format;
	char recipient[FEEDBACK_ADDR_MAX + 1];	/* Final-Recipient, Original-
						 * Rcpt-To or from the text;
						 * "" unknown (use the VERP) */
	char original_recipient[FEEDBACK_ADDR_MAX + 1];	/* "" none */
	char status[16];		/* "5.1.1", "" none */
	unsigned code;			/* SMTP code from the diagnostic, 0 none */
	char diagnostic[512];		/* Diagnostic-Code text or the text line */
	char remote_mta[256];
	char feedback_type[32];		/* ARF Feedback-Type, lower case */
};

/*
 * Parses a whole message (header and body). Fills up to max items and
 * sets *n; returns 0 when it recognized a report (n may still be 0 for
 * a report with no recipient group), -1 when it is none of the three
 * (the caller keeps such mail for the operator).
 */
int feedback_parse(const char *msg, size_t len, struct feedback_item *items,
    size_t max, size_t *n);

const char *feedback_kind_name(enum feedback_kind k);

#endif
