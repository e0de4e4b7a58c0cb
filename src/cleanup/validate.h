/*
 * validate.h - envelope policy of tern-cleanup: who may be the sender
 * for which source, and what a valid recipient is. Pure code over the
 * config; tested by test_cleanup_validate.
 */
#ifndef TERN_CLEANUP_VALIDATE_H
#define TERN_CLEANUP_VALIDATE_H

#include <stdbool.h>
#include <stdint.h>

#include "address.h"
#include "config.h"

/* A refusal: code 0 means accepted. */
struct verdict {
	unsigned code;
	const char *status;
	char text[300];
};

/*
 * The envelope sender of a new transaction: syntax (SMTPUTF8 when
 * smtputf8), and for locally submitted mail (submission, sendmail, HTTP)
 * a domain that is a configured [domain] or one's return_path domain.
 * The null sender is accepted from every source. 0 or -1 (v says why).
 */
int validate_sender(const struct tern_config *cfg, uint8_t source,
    const char *sender, bool smtputf8, struct verdict *v);

/*
 * The source a client on tern-smtpd's socket (the one in its jail) may
 * claim in BEGIN: submission or inbound, what smtpd takes in. Anything
 * else (a DSN of tern-bounce, a local submission, the HTTP API) would
 * skip checks that apply to smtpd's mail: 554 5.7.0. Clients of the
 * private socket are tern's own and may claim any source. 0 or -1.
 */
int validate_source(bool smtpd_socket, uint8_t source, struct verdict *v);

/* "submission", "inbound", "sendmail", "bounce", "http", or "unknown". */
const char *cleanup_source_name(uint8_t source);

/* A recipient's syntax; out gets the parsed address. 0 or -1. */
int validate_recipient(const char *rcpt, bool smtputf8, struct address *out,
    struct verdict *v);

#endif
