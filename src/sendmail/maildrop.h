/*
 * maildrop.h - the maildrop: where sendmail(1) leaves a message when the
 * daemons are not running, and where tern-pickup finds it. One file per
 * message in queue_dir/maildrop, written to a dot-name, fsynced, renamed
 * into place and the directory fsynced: a file without a leading dot is
 * complete. The format (version 1, all lines end in LF):
 *
 *   TERN-MAILDROP 1
 *   S <envelope sender>          ("S " alone: the null sender)
 *   R <recipient>                (one line per recipient, at least one)
 *   N <notify bits>              (optional: CLEANUP_NOTIFY_*, decimal)
 *   T <ret>                      (optional: enum cleanup_ret, decimal)
 *   V <envid>                    (optional: DSN ENVID)
 *   B <body>                     (enum cleanup_body, decimal)
 *   U <0|1>                      (SMTPUTF8)
 *   L <content length>           (decimal bytes)
 *   (an empty line)
 *   <exactly L bytes of content, CRLF lines>
 *
 * Who submitted the message is NOT in the file: it is the file's owner
 * (st_uid), which the submitter cannot forge. See sendmail(1) for the
 * directory's permissions (setgid group tern-drop, mode 1770).
 * The parser takes untrusted bytes (a local user can write any file
 * there); it is fuzzed by tests/fuzz/fuzz_maildrop.c.
 */
#ifndef TERN_SENDMAIL_MAILDROP_H
#define TERN_SENDMAIL_MAILDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAILDROP_MAGIC		"TERN-MAILDROP 1\n"
#define MAILDROP_MAX_RCPTS	10000
#define MAILDROP_LINE_MAX	1024	/* an envelope line */
/* Users in this group may drop mail; with it, queue_dir is 0711. */
#define MAILDROP_GROUP		"tern-drop"

struct maildrop_msg {
	char *sender;			/* "" the null sender */
	char **rcpts;
	size_t n_rcpts;
	uint8_t notify;
	uint8_t ret;
	char *envid;			/* "" none */
	uint8_t body;
	bool smtputf8;
	const char *content;		/* parse: points into the parsed buffer */
	size_t content_len;
};

/* Encodes m (content included) into an allocated buffer. */
char *maildrop_encode(const struct maildrop_msg *m, size_t *len);
/* Parses a maildrop file; 0, or -1 with *why. Strings are allocated. */
int maildrop_parse(const char *buf, size_t len, struct maildrop_msg *m,
    const char **why);
void maildrop_msg_free(struct maildrop_msg *m);

/*
 * Writes m durably into dir: dot-file, fsync, rename, fsync of dir.
 * name (at least 64 bytes) gets the final file name. 0 or -1 (errno).
 */
int maildrop_write(const char *dir, const struct maildrop_msg *m, char *name,
    size_t name_size);

/* True for a name pickup should take (not a dot-file in progress). */
bool is_maildrop_name(const char *name);

#endif
