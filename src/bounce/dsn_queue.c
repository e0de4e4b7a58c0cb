/*
 * dsn_queue.c - queue records to a DSN report (see dsn_queue.h). Pure.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "dsn_queue.h"
#include "util.h"

static const struct queue_rcpt_info *
find_rcpt(const struct queue_loaded_msg *m, uint32_t index)
{
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].index == index)
			return &m->rcpts[i];
	return NULL;
}

int
dsn_build_from_queue(struct dsn_build *b, const struct queue_loaded_msg *m,
    const uint32_t *idx, size_t n, uint8_t kind, const char *hostname,
    int64_t now, int64_t lifetime, uint64_t unique, const char *original,
    size_t original_len)
{
	char qid[QUEUE_ID_LEN + 1];
	enum dsn_action action;
	const char *def_status;

	memset(b, 0, sizeof(*b));
	switch (kind) {
	case QUEUE_RF_DSN_FAILURE:
		action = DSN_ACTION_FAILED;
		def_status = "5.0.0";
		break;
	case QUEUE_RF_DSN_DELAY:
		action = DSN_ACTION_DELAYED;
		def_status = "4.0.0";
		break;
	case QUEUE_RF_DSN_SUCCESS:
		action = DSN_ACTION_DELIVERED;
		def_status = "2.0.0";
		break;
	default:
		return -1;
	}
	/* Never a report to the null sender (no loops), never when unwanted. */
	if (m->info.sender[0] == '\0' || n == 0)
		return -1;
	b->rcpts = xcalloc(n, sizeof(*b->rcpts));
	for (size_t i = 0; i < n; i++) {
		const struct queue_rcpt_info *r = find_rcpt(m, idx[i]);
		struct dsn_rcpt *d = &b->rcpts[i];

		if (r == NULL || !queue_dsn_wanted(&m->info, r, kind)) {
			dsn_build_free(b);
			return -1;
		}
		d->address = r->address;
		d->orcpt = r->orcpt;
		d->action = action;
		d->status = r->last_status[0] != '\0' ? r->last_status : def_status;
		d->code = r->last_code;
		d->text = r->last_text;
		d->remote_host = r->last_host;
		d->last_attempt = r->last_attempt_ms / 1000;
		if (action == DSN_ACTION_DELAYED)
			d->will_retry_until = m->info.arrival_ms / 1000 + lifetime;
	}
	queue_id_format(m->info.qid, qid);
	b->message_id = xasprintf("%s.%llu.dsn@%s", qid,
	    (unsigned long long)unique, hostname);
	b->boundary = xasprintf("%s.%llu/%s", qid, (unsigned long long)unique,
	    hostname);
	b->postmaster = xasprintf("MAILER-DAEMON@%s", hostname);
	b->report.reporting_mta = hostname;
	b->report.postmaster = b->postmaster;
	b->report.to = m->info.sender;
	b->report.envid = m->info.envid;
	b->report.arrival = m->info.arrival_ms / 1000;
	b->report.date = now;
	b->report.message_id = b->message_id;
	b->report.boundary = b->boundary;
	/* RET=FULL returns the message; RET=HDRS the header; without RET a
	 * failure returns it (as Postfix does), a delay or success the header. */
	b->report.return_full = m->info.ret == CLEANUP_RET_FULL ||
	    (m->info.ret == CLEANUP_RET_DEFAULT && action == DSN_ACTION_FAILED);
	b->report.full_limit = DSN_FULL_LIMIT;
	b->report.original = original;
	b->report.original_len = original_len;
	b->report.rcpts = b->rcpts;
	b->report.n_rcpts = n;
	return 0;
}

void
dsn_build_free(struct dsn_build *b)
{
	free(b->rcpts);
	free(b->message_id);
	free(b->boundary);
	free(b->postmaster);
	memset(b, 0, sizeof(*b));
}
