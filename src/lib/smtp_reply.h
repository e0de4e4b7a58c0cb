/*
 * smtp_reply.h - a robust parser for SMTP replies from untrusted servers
 * (the CVE-2020-8794 class): multiline replies, lines of any length,
 * replies over 512 bytes, NUL bytes, bare LF or CR, inconsistent codes
 * and garbage are all parsed into a bounded, length-delimited record.
 * Nothing a server sends can overrun it; a malformed reply is reported
 * as such and the caller defers and closes the connection.
 * Used by tern-smtp (no privilege).
 */
#ifndef TERN_SMTP_REPLY_H
#define TERN_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_TEXT_MAX	2000	/* text bytes kept (the rest is cut) */
#define SMTP_REPLY_MAX_BYTES	(128 * 1024)	/* a longer reply is malformed */
#define SMTP_REPLY_MAX_LINES	1000	/* more lines: malformed */

/* One complete reply. Text is printable ASCII only (other bytes become
 * '?'), each line's text after the code and separator, lines joined with
 * '\n', cut at SMTP_REPLY_TEXT_MAX. */
struct smtp_reply {
	unsigned code;			/* 200..599; 0 when malformed */
	char status[16];		/* enhanced status of the first line
					 * ("2.0.0", class matching the code),
					 * "" none */
	char text[SMTP_REPLY_TEXT_MAX + 1];	/* without the codes, NUL-terminated */
	size_t text_len;
	unsigned n_lines;
	bool truncated;			/* text was cut */
	const char *why;		/* malformed: a static reason, else NULL */
};

enum smtp_reply_result {
	SMTP_REPLY_MORE = 0,		/* need more bytes */
	SMTP_REPLY_DONE = 1,		/* a complete, well-formed reply */
	SMTP_REPLY_BAD = -1,		/* malformed: reply.why says why */
};

/* Incremental parser state; feed it bytes as they arrive. */
struct smtp_reply_parser {
	struct smtp_reply reply;
	size_t bytes;			/* of this reply so far */
	size_t line_pos;		/* bytes of the current line so far */
	char line_code[3];
	bool line_last;			/* the current line is the last one */
	bool saw_cr;			/* the previous byte was CR */
	bool done;			/* a result was returned: reset first */
};

/* Starts a new reply (after DONE or BAD, or to discard a partial one). */
void smtp_reply_parser_reset(struct smtp_reply_parser *p);

/*
 * Feeds len bytes. *consumed says how many were used: up to and including
 * the reply's final LF (DONE), the offending byte (BAD) or all (MORE).
 * After DONE or BAD, p->reply holds the result until the next reset.
 */
enum smtp_reply_result smtp_reply_feed(struct smtp_reply_parser *p,
    const char *buf, size_t len, size_t *consumed);

/* "250 2.0.0 text" form for logs and results (lines joined with a
 * space), at most size-1 bytes. */
void smtp_reply_format(const struct smtp_reply *r, char *buf, size_t size);

#endif
