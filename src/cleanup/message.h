/*
 * message.h - the streaming reader of a submitted message in tern-cleanup.
 * Bytes arrive in chunks of any size; it normalizes every line end (CRLF,
 * bare LF, bare CR) to CRLF, collects the header section as fields, then
 * passes the body on in normalized pieces, checking as it goes: line
 * length (998), NUL bytes, 8-bit data, header and message size.
 * Pure code (no I/O); tested by test_cleanup_message and fuzzed by
 * fuzz_cleanup_message.
 */
#ifndef TERN_CLEANUP_MESSAGE_H
#define TERN_CLEANUP_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "header.h"

#define MSG_LINE_MAX		998	/* characters before CRLF (RFC 5322) */
#define MSG_HEADER_BYTES_MAX	(1024 * 1024)	/* the whole header section */
#define MSG_HEADER_FIELDS_MAX	5000
#define MSG_BODY_FLUSH		(64 * 1024)	/* body bytes passed on at once */

enum msg_error {
	MSG_OK = 0,
	MSG_ERR_LINE_TOO_LONG,		/* a line over 998 characters */
	MSG_ERR_8BIT,			/* 8-bit data not declared (8BITMIME) */
	MSG_ERR_NUL,			/* a NUL byte */
	MSG_ERR_HEADER_TOO_BIG,		/* too many or too long header fields */
	MSG_ERR_TOO_BIG,		/* over the message size limit */
};

struct msg_reader_opts {
	bool allow_8bit;		/* BODY=8BITMIME, BINARYMIME or SMTPUTF8 */
	uint64_t size_limit;		/* normalized bytes; 0: none */
};

/* The header section is complete (fields in h, which the callback may
 * change); the body follows through body(). */
typedef void (*msg_headers_fn)(void *arg, struct header_list *h);
/* Normalized body bytes (CRLF line ends), in order. */
typedef void (*msg_body_fn)(void *arg, const char *p, size_t n);

struct msg_reader {
	struct msg_reader_opts opts;
	msg_headers_fn on_headers;
	msg_body_fn on_body;
	void *arg;

	struct header_list headers;
	bool in_body;			/* past the header section */
	bool at_start;			/* no line seen yet */
	bool pending_cr;		/* a CR ended the last chunk */
	char line[MSG_LINE_MAX + 1];	/* the line being read */
	size_t line_len;
	bool line_8bit;
	char *out;			/* body bytes not yet passed on */
	size_t out_len;
	uint64_t size;			/* normalized bytes so far */
	size_t n_lines;
	bool has_8bit;			/* any byte >= 0x80 (headers or body) */
	bool finished;
	enum msg_error error;		/* the first problem; input then ignored */
};

void msg_reader_init(struct msg_reader *r, const struct msg_reader_opts *o,
    msg_headers_fn on_headers, msg_body_fn on_body, void *arg);
/* Reads a chunk. Once r->error is set, further input is ignored. */
void msg_reader_feed(struct msg_reader *r, const void *buf, size_t len);
/* The input is complete: ends the last line (a missing final CRLF is
 * added) and the header section if still open, passes on what is left. */
void msg_reader_finish(struct msg_reader *r);
/* Frees the headers and buffers. */
void msg_reader_free(struct msg_reader *r);

/* The SMTP reply for an error: code, enhanced status, text. */
void msg_error_reply(enum msg_error e, unsigned *code, const char **status,
    const char **text);

#endif
