/*
 * mailq.h - the queue listing of `mailq` and `sendmail -bp`: exactly
 * `ternctl queue`'s (queue/listing.h), then the count of messages still
 * in the maildrop. Runs as the invoking user (needs read access to
 * queue_dir).
 */
#ifndef TERN_SENDMAIL_MAILQ_H
#define TERN_SENDMAIL_MAILQ_H

#include <stdio.h>

struct queue;

/* Prints the listing of q (NULL: no queue yet) and of maildrop_dir;
 * 0, or -1 when the queue could not be read (queue_last_error()). */
int mailq_print(struct queue *q, const char *maildrop_dir, FILE *out);

#endif
