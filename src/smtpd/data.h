/*
 * data.h - the DATA and BDAT stream decoder of tern-smtpd. Only CRLF.CRLF
 * ends DATA; dot-stuffing is undone; bare CR and bare LF are noted (the
 * message is then refused with 5.5.2 once its end has been read) and never
 * end the data, so no published smuggling sequence splits a message.
 * Pure code on untrusted bytes; no privilege.
 */
#ifndef TERN_SMTPD_DATA_H
#define TERN_SMTPD_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_TEXT_LINE_MAX	1000	/* RFC 5321 4.5.3.1.6, with CRLF */

/* What the decoder saw; any of these refuses the message. */
#define DATA_BARE_LF		0x01
#define DATA_BARE_CR		0x02
#define DATA_LONG_LINE		0x04

struct data_reader {
	int state;
	bool raw;		/* BDAT: no dot-stuffing, no end marker */
	bool done;		/* CRLF.CRLF was read */
	unsigned flags;		/* DATA_* */
	size_t line_len;	/* bytes of the current line so far */
	uint64_t size;		/* content bytes produced */
};

/* Starts a decoder for DATA (raw false) or a BDAT message (raw true). */
void data_reader_init(struct data_reader *r, bool raw);

/*
 * Decodes in[0..n): content goes to out (room for n + 2 bytes), *out_len
 * says how much. Returns the number of input bytes consumed: fewer than n
 * only when the end of DATA was found (r->done), so the rest is the next
 * command.
 */
size_t data_reader_feed(struct data_reader *r, const uint8_t *in, size_t n,
    uint8_t *out, size_t *out_len);

/* BDAT LAST: flushes a CR held back at the end of the last chunk. */
void data_reader_finish(struct data_reader *r, uint8_t *out, size_t *out_len);

#endif
