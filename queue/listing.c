/*
 * listing.c - the mailq-style queue listing (see listing.h), shared by
 * ternctl and sendmail/mailq.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "listing.h"
#include "queue.h"

struct listing {
	FILE *out;
	uint64_t messages;
	uint64_t bytes;
	time_t last_t;
	char last_date[32];
};

const char *
queue_rcpt_state_name(uint8_t state)
{
	switch (state) {
	case QUEUE_RCPT_QUEUED: return "queued";
	case QUEUE_RCPT_DEFERRED: return "deferred";
	case QUEUE_RCPT_DELIVERED: return "delivered";
	case QUEUE_RCPT_FAILED: return "failed";
	}
	return "unknown";
}

void
queue_format_reply(char *buf, size_t size, uint16_t code, const char *status,
    const char *text)
{
	char prefix[8];

	snprintf(prefix, sizeof(prefix), "%u ", code);
	if (code == 0 || strncmp(text, prefix, strlen(prefix)) == 0)
		snprintf(buf, size, "%s%s%s", code == 0 ? status : "",
		    code == 0 && status[0] && text[0] ? " " : "", text);
	else
		snprintf(buf, size, "%u%s%s%s%s", code, status[0] ? " " : "",
		    status, text[0] ? " " : "", text);
}

static bool
rcpt_pending(const struct queue_rcpt_info *r)
{
	return r->state == QUEUE_RCPT_QUEUED || r->state == QUEUE_RCPT_DEFERRED;
}

/* One message: id (* active, ! held), size, arrival, sender, then each
 * pending recipient under its last reply. */
static int
list_cb(void *arg, const struct queue_msg_info *m,
    const struct queue_rcpt_info *rcpts, size_t n_rcpts)
{
	struct listing *l = arg;
	char id[QUEUE_ID_LEN + 1];
	time_t t = (time_t)(m->arrival_ms / 1000);
	bool active = false;

	for (size_t i = 0; i < n_rcpts; i++)
		if (rcpt_pending(&rcpts[i]) && (rcpts[i].flags & QUEUE_RF_ACTIVE))
			active = true;
	if (t != l->last_t) {
		struct tm tm;

		localtime_r(&t, &tm);
		strftime(l->last_date, sizeof(l->last_date), "%a %b %e %H:%M:%S", &tm);
		l->last_t = t;
	}
	queue_id_format(m->qid, id);
	fprintf(l->out, "%s%c %8llu %s  %s\n", id,
	    m->hold ? '!' : active ? '*' : ' ', (unsigned long long)m->size,
	    l->last_date, m->sender[0] ? m->sender : "MAILER-DAEMON");
	for (size_t i = 0; i < n_rcpts; i++) {
		const struct queue_rcpt_info *r = &rcpts[i];

		if (!rcpt_pending(r)) {
			if (r->flags & QUEUE_RF_DSN_MASK)
				fprintf(l->out, "%47s(%s, DSN pending)\n%47s%s\n", "",
				    queue_rcpt_state_name(r->state), "", r->address);
			continue;
		}
		if (r->state == QUEUE_RCPT_DEFERRED) {
			char reply[256];

			queue_format_reply(reply, sizeof(reply), r->last_code,
			    r->last_status, r->last_text);
			fprintf(l->out, "%47s(deferred: %s)\n", "", reply);
		}
		fprintf(l->out, "%47s%s\n", "", r->address);
	}
	fputc('\n', l->out);
	l->messages++;
	l->bytes += m->size;
	return 0;
}

int
queue_print_listing(struct queue *q, FILE *out)
{
	struct listing l;

	memset(&l, 0, sizeof(l));
	l.out = out;
	l.last_t = -1;
	fprintf(out, "-Queue ID-------- --Size-- ----Arrival Time---- "
	    "-Sender/Recipient-------\n");
	if (q != NULL && queue_list(q, list_cb, &l) == -1 &&
	    queue_last_error() != QUEUE_ERR_CORRUPT)
		return -1;
	if (l.messages == 0)
		fprintf(out, "Mail queue is empty\n");
	else
		fprintf(out, "-- %llu Kbytes in %llu Request%s.\n",
		    (unsigned long long)((l.bytes + 1023) / 1024),
		    (unsigned long long)l.messages, l.messages == 1 ? "" : "s");
	return 0;
}
