/*
 * header_split.h - cuts a message arriving in arbitrary chunks into whole
 * header fields (continuation lines kept, CRLF between them, no trailing
 * CRLF), the end of the header, and body bytes, without holding more than
 * the current field. Pure; runs in tern-signer, unprivileged.
 */
#ifndef TERN_HEADER_SPLIT_H
#define TERN_HEADER_SPLIT_H

#include <stdbool.h>
#include <stddef.h>

struct header_split_ops {
	/* A complete field: "Name: value\r\n\tmore" (not NUL-terminated). */
	int (*field)(void *arg, const char *field, size_t len);
	/* The header ended (the empty line, or the end of the message). */
	int (*eoh)(void *arg);
	/* Body bytes, exactly as received (checked: CRLF line ends only). */
	int (*body)(void *arg, const char *buf, size_t len);
};

struct header_split {
	const struct header_split_ops *ops;
	void *arg;
	size_t max_field;
	char *field;
	size_t len, cap;
	bool line_start;		/* the next byte starts a line */
	bool cr;			/* a CR is pending (header and body) */
	bool blank_cr;			/* a CR started the line: maybe the end */
	bool in_body;
	const char *error;		/* set once; later input is ignored */
};

void header_split_init(struct header_split *hs,
    const struct header_split_ops *ops, void *arg, size_t max_field);
/*
 * Feeds bytes. Returns 0, or -1 when the message is malformed (a bare CR
 * or LF anywhere, a first line that continues nothing, a field longer than
 * max_field) or a callback failed; hs->error then says why.
 */
int header_split_feed(struct header_split *hs, const char *buf, size_t len);
/* The message is complete: flushes the last field and the end of header. */
int header_split_finish(struct header_split *hs);
void header_split_free(struct header_split *hs);

#endif
