/*
 * listing.h - the queue listing of `ternctl queue`, `mailq` and
 * `sendmail -bp`, in Postfix's mailq shape: a header line; one block per
 * message (queue id, '*' when a recipient is in delivery, '!' when held,
 * size, arrival, sender; then each recipient still waiting, under its
 * last reply, and each failed or delivered one whose DSN is pending); and
 * a total line. One implementation, so that the commands cannot differ.
 * Runs in the command's process, read-only.
 */
#ifndef TERN_QUEUE_LISTING_H
#define TERN_QUEUE_LISTING_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct queue;

/* "queued", "deferred", "delivered", "failed" (QUEUE_RCPT_*). */
const char *queue_rcpt_state_name(uint8_t state);

/* A recipient's last reply as one line: "451 4.7.1 text", or the text
 * alone when it already starts with its code. */
void queue_format_reply(char *buf, size_t size, uint16_t code,
    const char *status, const char *text);

/*
 * Prints the listing of q to out (q NULL: no queue yet, an empty one).
 * 0; -1 when the queue could not be read (queue_last_error()), after the
 * messages read so far and without a total line. A corrupt record is
 * skipped (libternq logs it) and the listing goes on.
 */
int queue_print_listing(struct queue *q, FILE *out);

#endif
