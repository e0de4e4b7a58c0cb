/*
 * smtp_stdio.h - `sendmail -bs`: SMTP on stdin/stdout, relayed command by
 * command to tern-cleanup, or into the maildrop when tern is down.
 * Runs as the invoking user.
 */
#ifndef TERN_SENDMAIL_SMTP_STDIO_H
#define TERN_SENDMAIL_SMTP_STDIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct maildrop_msg;

struct bs_config {
	const char *hostname;		/* greeting and unqualified addresses */
	const char *socket_path;	/* run_dir/public/sendmail */
	int timeout_ms;
	uint64_t size_limit;		/* message_size_limit */
	/* Writes a message durably into the maildrop; 0 or -1. */
	int (*drop)(const struct maildrop_msg *m, char *name, size_t size,
	    void *arg);
	void *drop_arg;
};

/* Runs the session until QUIT or end of input; returns 0. */
int smtp_stdio_run(const struct bs_config *bc, FILE *in, FILE *out);

#endif
