/*
 * header.h - the header section of a message as tern-cleanup holds it:
 * each field kept as received (folded, CRLF between its lines), with
 * helpers to compare names, unfold values and find the From mailbox.
 * Pure code (no I/O); runs in tern-cleanup, tested by test_cleanup_header.
 */
#ifndef TERN_CLEANUP_HEADER_H
#define TERN_CLEANUP_HEADER_H

#include <stdbool.h>
#include <stddef.h>

struct header_field {
	char *text;			/* the field as received: "Name: value",
					 * folded lines joined by CRLF, no final CRLF */
	size_t len;
	size_t name_len;		/* the name is text[0..name_len) */
	bool removed;			/* dropped from the output (Bcc) */
};

struct header_list {
	struct header_field *v;
	size_t n;
	size_t cap;
	size_t bytes;			/* sum of len, for the size limit */
};

void header_list_init(struct header_list *h);
void header_list_free(struct header_list *h);
/* Appends a copy of a field; name_len as header_name_len() found it. */
void header_list_append(struct header_list *h, const char *text, size_t len,
    size_t name_len);
/* Appends a folded continuation line ("\tmore") to the last field. */
void header_list_continue(struct header_list *h, const char *line, size_t len);

/*
 * The length of the field name when line starts a header field
 * ("Name:" or the obsolete "Name :"), else 0. The name is printable
 * ASCII without ':' (RFC 5322 ftext).
 */
size_t header_name_len(const char *line, size_t len);

/* True when the field's name is name, ASCII case-insensitively. */
bool is_header_named(const struct header_field *f, const char *name);
/* How many fields (not removed) have this name. */
size_t header_count(const struct header_list *h, const char *name);
/* The first field (not removed) with this name, or NULL. */
const struct header_field *header_find(const struct header_list *h,
    const char *name);

/* The value after the colon, unfolded (CRLF before WSP removed) and
 * trimmed of surrounding white space; the caller frees it. */
char *header_value_unfolded(const struct header_field *f);

/*
 * The domain of the first mailbox in an address-list value ("Name
 * <a@b.example>, c@d" gives "b.example"), lower-cased into buf; comments
 * and quoted strings are skipped. Returns 0, or -1 when no mailbox with
 * a domain is there (an empty group, garbage).
 */
int header_mailbox_domain(const char *value, char *buf, size_t size);
/* How many mailboxes an address-list value holds (groups count their
 * members); for "From: a, b" (which needs a Sender). */
size_t header_mailbox_count(const char *value);

#endif
