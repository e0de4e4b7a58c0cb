/*
 * fixup.h - what tern-cleanup checks and changes in a header section:
 * the hop count (554 5.4.6), exactly one From on submission (550 5.6.0),
 * Bcc removed, Message-ID and Date added when missing (RFC 6409 section
 * 8), a Received field for this hop; and the final header section
 * written out. Pure code; tested by test_cleanup_fixup.
 */
#ifndef TERN_CLEANUP_FIXUP_H
#define TERN_CLEANUP_FIXUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "header.h"

#define FIXUP_MAX_HOPS		50	/* more Received fields: a loop */

/* What the header fix-ups need to know of the transaction. */
struct fixup_env {
	uint8_t source;			/* enum cleanup_source */
	const char *hostname;		/* this host ([server] hostname) */
	const char *helo;		/* "" none (local) */
	const char *client_name;	/* "" unknown */
	const char *client_addr;	/* "" local */
	const char *tls;		/* "" none, else "TLSv1.3 cipher" */
	const char *auth_user;		/* "" none */
	bool smtputf8;
	const char *sender;		/* envelope sender, "" null */
	const char *single_rcpt;	/* the only recipient, or NULL */
	const char *queue_id;		/* for the Received field */
	time_t now;
	const char *unique;		/* local part of a new Message-ID */
};

struct fixup_result {
	unsigned code;			/* 0: accepted; else the refusal */
	const char *status;
	const char *text;
	size_t n_received;		/* Received fields found */
	char *from_domain;		/* lower-cased, NULL when none */
	char *message_id;		/* the Message-ID value ("<x@y>") */
	char *prepend;			/* fields to put first (Received), CRLF each */
	char *append;			/* fields to add last, CRLF each, "" none */
};

/*
 * Checks and fixes a header section for env. On refusal r->code says
 * why; otherwise h has Bcc fields marked removed and r has the fields to
 * append and the Message-ID. r->prepend is left NULL for the caller to
 * set (fixup_received() once the queue id is known). Free r with
 * fixup_result_free().
 */
void fixup_headers(struct header_list *h, const struct fixup_env *env,
    struct fixup_result *r);
void fixup_result_free(struct fixup_result *r);

/* This hop's Received field (env->queue_id set), folded, CRLF-ended. */
char *fixup_received(const struct fixup_env *env);

/* Calls out() with the final header section and its empty line. */
void fixup_write_headers(const struct header_list *h,
    const struct fixup_result *r,
    void (*out)(void *arg, const char *p, size_t n), void *arg);
/* The total length fixup_write_headers() writes. */
size_t fixup_headers_size(const struct header_list *h,
    const struct fixup_result *r);

/* An RFC 5322 date-time in local time ("Thu, 26 Nov 2026 23:33:18 +0000"). */
void fixup_format_date(time_t t, char *buf, size_t size);

/* Copies s into buf (size > 0) keeping printable ASCII other than
 * parentheses and backslash (replaced by '?'), cut to fit: safe inside a
 * header comment whatever the client sent. */
void fixup_sanitize(const char *s, char *buf, size_t size);

#endif
