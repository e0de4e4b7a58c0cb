/*
 * message.h - the pure parts of the sendmail command: turning what a
 * program wrote on stdin into a message tern can queue (CRLF lines, the
 * "." terminator unless -i, NUL refused), the header work sendmail does
 * itself (-t recipients from To/Cc/Bcc, dropping Bcc, a From header from
 * -F and the sender), and checks of untrusted arguments. No I/O here;
 * unit-tested in tests/unit/test_sendmail.c. Runs as the invoking user.
 */
#ifndef TERN_SENDMAIL_MESSAGE_H
#define TERN_SENDMAIL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

/* A growing byte buffer. */
struct sm_buf {
	char *data;
	size_t len;
	size_t cap;
};

void sm_buf_append(struct sm_buf *b, const void *p, size_t n);
void sm_buf_free(struct sm_buf *b);

/* A list of strings (recipients). */
struct sm_list {
	char **v;
	size_t n;
};

void sm_list_add(struct sm_list *l, const char *s);
void sm_list_free(struct sm_list *l);

/* How stdin is turned into content. */
struct sm_normalizer {
	bool dot_ends;			/* a line of one "." ends the message (no -i) */
	bool at_line_start;
	bool pending_cr;		/* a CR was seen at the end of the last chunk */
	bool ended;			/* the "." line was seen: ignore the rest */
	bool saw_nul;
	bool eightbit;			/* a byte >= 0x80 appeared */
	struct sm_buf line;		/* the current line, until its end */
};

/*
 * Feeds bytes read from stdin; complete lines go to out with CRLF ends
 * (LF or CRLF in; a CR not followed by LF is kept as it is). Returns -1
 * once a NUL byte was seen (the message is refused: EX_DATAERR).
 */
void sm_normalizer_init(struct sm_normalizer *n, bool dot_ends);
int sm_normalizer_feed(struct sm_normalizer *n, const char *p, size_t len,
    struct sm_buf *out);
/* End of input: a last line without newline gets CRLF. */
int sm_normalizer_finish(struct sm_normalizer *n, struct sm_buf *out);
void sm_normalizer_free(struct sm_normalizer *n);

/* Length of the header block including the empty line that ends it (or
 * the whole content when there is no body). */
size_t sm_header_length(const char *content, size_t len);

/* True when the header block has a field of this name (case-insensitive). */
bool has_sm_header(const char *content, size_t hdr_len, const char *name);

/*
 * -t: adds every address of To, Cc and Bcc (Resent-To, Resent-Cc and
 * Resent-Bcc instead when any Resent- field is there) to rcpts, and
 * removes the Bcc (or Resent-Bcc) fields from content. Returns -1 with
 * *why when a field cannot be parsed.
 */
int sm_extract_recipients(struct sm_buf *content, struct sm_list *rcpts,
    const char **why);

/*
 * Parses an RFC 5322 address list ("A <a@b>, c@d, group: e@f;") into
 * bare addresses appended to out. Returns -1 with *why on bad syntax.
 */
int sm_parse_address_list(const char *s, size_t len, struct sm_list *out,
    const char **why);

/*
 * Builds "From: "Full Name" <sender>\r\n" (or "From: sender\r\n" without
 * a name). The name is quoted safely; returns NULL when it is not safe
 * (control characters) or too long.
 */
char *sm_from_header(const char *full_name, const char *sender);

/* Inserts a header field (ending in CRLF) at the top of content. */
void sm_prepend_header(struct sm_buf *content, const char *field);

#define SM_ADDRESS_MAX	254	/* RFC 5321 path limit less the brackets */
#define SM_NAME_MAX	200	/* -F full names */

/*
 * True when s is acceptable as an envelope address from the command line
 * or a header: printable, no blanks, brackets, commas or control
 * characters, at most SM_ADDRESS_MAX bytes, at most one unquoted '@' with
 * text on both sides.
 */
bool is_sm_address(const char *s);

/* Returns "addr" or "addr@domain" when addr has no '@' (allocated). */
char *sm_qualify(const char *addr, const char *domain);

/* True when s holds a byte >= 0x80 (SMTPUTF8 needed for an address). */
bool has_sm_8bit(const char *s);

#endif
