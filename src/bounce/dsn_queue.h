/*
 * dsn_queue.h - the DSN report for recipients of a queued message: maps
 * the queue's records (envelope, each recipient's last result) onto
 * struct dsn_report, so tern-bounce only loads, composes and submits.
 * Pure; used by tern-bounce for each BOUNCE_WORK.
 */
#ifndef TERN_BOUNCE_DSN_QUEUE_H
#define TERN_BOUNCE_DSN_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "dsn.h"
#include "queue.h"

/* A report and the storage it points into. */
struct dsn_build {
	struct dsn_report report;
	struct dsn_rcpt *rcpts;
	char *message_id;
	char *boundary;
	char *postmaster;
};

/*
 * Builds the report of kind (QUEUE_RF_DSN_FAILURE, _DELAY or _SUCCESS)
 * for the recipients idx[0..n) of m. now and unique (a counter) make the
 * Message-ID and boundary; lifetime ([delivery] max_queue_lifetime,
 * seconds) gives Will-Retry-Until. original is the message content.
 * Returns -1 when no report may be sent (null sender, NOTIFY=NEVER, an
 * index not in m): the caller acknowledges without sending.
 */
int dsn_build_from_queue(struct dsn_build *b, const struct queue_loaded_msg *m,
    const uint32_t *idx, size_t n, uint8_t kind, const char *hostname,
    int64_t now, int64_t lifetime, uint64_t unique, const char *original,
    size_t original_len);
void dsn_build_free(struct dsn_build *b);

#define DSN_FULL_LIMIT	(1024 * 1024)	/* larger originals: headers only */

#endif
