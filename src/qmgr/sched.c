/*
 * sched.c - finding due work: tern-qmgr never scans the queue. It asks
 * the schedule index for its earliest due time, claims due recipients in
 * batches while the active set has room (QMGR_ACTIVE_MAX), expires those
 * past max_queue_lifetime, fails suppressed addresses, and groups the
 * rest into jobs by message and destination domain.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmgr.h"
#include "util.h"
#include "verp.h"

static const char *
rcpt_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	return at != NULL && at[1] != '\0' ? at + 1 : "";
}

static struct job *
job_new(const struct queue_msg_info *m, struct dest *d)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->qid = m->qid;
	j->sender = xstrdup(m->sender);
	j->envid = xstrdup(m->envid);
	j->dest = d;
	j->arrival_ms = m->arrival_ms;
	j->size = m->size;
	j->body = m->body;
	j->ret = m->ret;
	j->smtputf8 = m->smtputf8;
	return j;
}

static void
job_add_rcpt(struct job *j, const struct queue_rcpt_info *r)
{
	struct job_rcpt *jr;

	j->rcpts = xreallocarray(j->rcpts, j->n_rcpts + 1, sizeof(*j->rcpts));
	jr = &j->rcpts[j->n_rcpts++];
	memset(jr, 0, sizeof(*jr));
	jr->index = r->index;
	jr->address = xstrdup(r->address);
	jr->orcpt = xstrdup(r->orcpt);
	jr->notify = r->notify;
	jr->flags = r->flags;
	jr->attempts = r->attempts;
	j->dest->pending_rcpts++;
	qmgr.n_active++;
}

/*
 * The return-path domain of a message whose sender is in a [domain] with
 * return_path: its mail goes out from b-<token>@return_path, one token
 * per recipient (so one recipient per job). NULL for none.
 */
static const char *
verp_domain(const struct queue_msg_info *m)
{
	const char *at = strrchr(m->sender, '@');
	const struct cfg_domain *d;

	if (m->sender[0] == '\0' || at == NULL)
		return NULL;
	d = config_find_domain(qmgr.d.cfg, at + 1);
	return d != NULL ? d->return_path : NULL;
}

/* One claimed message: expire, suppress, or put into jobs. */
static void
claimed_msg(const struct queue_loaded_msg *lm, int64_t now_ms)
{
	const struct queue_msg_info *m = &lm->info;
	const char **addrs;
	struct queue_supp_hit *hits;
	struct dest **touched = NULL;
	size_t n_touched = 0;
	bool first = false;
	size_t n_wait = 0;
	struct dest *wait_dest = NULL;
	char id[QUEUE_ID_LEN + 1];
	const char *verp = verp_domain(m);
	size_t job_max = verp != NULL ? 1 : QMGR_JOB_RCPT_MAX;

	queue_id_format(m->qid, id);
	/* Mail from the inbound listener (bounces, complaints to a return
	 * path) is tern-bounce's to parse, never delivered. */
	if (m->source == CLEANUP_SOURCE_INBOUND) {
		bounce_feedback(lm);
		return;
	}
	addrs = xcalloc(lm->n_rcpts ? lm->n_rcpts : 1, sizeof(*addrs));
	hits = xcalloc(lm->n_rcpts ? lm->n_rcpts : 1, sizeof(*hits));
	for (size_t i = 0; i < lm->n_rcpts; i++)
		addrs[i] = lm->rcpts[i].address;
	if (queue_suppress_check(qmgr.q, addrs, lm->n_rcpts, now_ms, hits) == -1) {
		log_warn("%s: suppression look-up failed: %s", id,
		    queue_strerror(queue_last_error()));
		memset(hits, 0, lm->n_rcpts * sizeof(*hits));
	}
	for (size_t i = 0; i < lm->n_rcpts; i++) {
		const struct queue_rcpt_info *r = &lm->rcpts[i];
		struct dest *d;

		/* A DSN flag (after a restart, or a delay notice riding
		 * along): tern-bounce is told. Final with a DSN pending is
		 * its work, not ours: it stays ACTIVE in the store (see
		 * tern-qmgr(8)). */
		if (r->flags & QUEUE_RF_DSN_MASK)
			bounce_notify(m->qid, r->index, r->state !=
			    QUEUE_RCPT_QUEUED && r->state != QUEUE_RCPT_DEFERRED);
		if (r->state != QUEUE_RCPT_QUEUED && r->state != QUEUE_RCPT_DEFERRED)
			continue;
		if (policy_is_expired(&qmgr.policy, now_ms, m->arrival_ms)) {
			result_expire(m, r, now_ms);
			continue;
		}
		if (hits[i].found) {
			result_suppressed(m, r, hits[i].reason, now_ms);
			continue;
		}
		if (r->attempts == 0 && r->state == QUEUE_RCPT_QUEUED)
			first = true;
		d = dest_get(rcpt_domain(r->address));
		/* A destination with enough work in hand: back to the
		 * schedule, so other destinations get their turn. */
		if (d->pending_rcpts >= QMGR_DEST_PENDING_MAX) {
			queue_update_unclaim(store_group(), m->qid, r->index,
			    now_ms + dest_wait_ms(d));
			store_track(m->qid, NULL, NULL);
			n_wait++;
			wait_dest = d;
			continue;
		}
		if (d->building == NULL || d->building->qid != m->qid ||
		    d->building->n_rcpts >= job_max) {
			if (d->building != NULL && d->building->qid == m->qid)
				dest_push(d, d->building);
			d->building = job_new(m, d);
			touched = xreallocarray(touched, n_touched + 1,
			    sizeof(*touched));
			touched[n_touched++] = d;
		}
		job_add_rcpt(d->building, r);
		if (verp != NULL && d->building->return_path == NULL) {
			char rp[QUEUE_ADDRESS_MAX + 1];

			if (verp_encode(qmgr.verp_key, m->qid, r->index, verp, rp,
			    sizeof(rp)) == 0)
				d->building->return_path = xstrdup(rp);
		}
	}
	for (size_t i = 0; i < n_touched; i++) {
		struct dest *d = touched[i];

		if (d->building != NULL) {
			dest_push(d, d->building);
			d->building = NULL;
		}
	}
	if (n_wait > 0)
		log_debug("%s: %zu recipient(s) wait %llds: %s has %zu in hand", id,
		    n_wait, (long long)(dest_wait_ms(wait_dest) / 1000),
		    wait_dest->name, wait_dest->pending_rcpts);
	if (first)
		log_info("%s: from=<%s>, size=%llu, nrcpt=%u (queue active)", id,
		    m->sender, (unsigned long long)m->size, m->n_rcpt);
	free(touched);
	free(addrs);
	free(hits);
}

void
sched_claimed(struct queue_claim *c, int64_t now_ms)
{
	for (size_t i = 0; i < c->n_msgs; i++)
		claimed_msg(&c->msgs[i], now_ms);
	if (c->n_rcpts > 0)
		log_debug("claimed %zu recipient(s) of %zu message(s); %zu active",
		    c->n_rcpts, c->n_msgs, qmgr.n_active);
	/* A full batch: more may be due right now. */
	if (c->n_rcpts >= QMGR_CLAIM_BATCH || (c->n_rcpts > 0 &&
	    qmgr.n_active < QMGR_ACTIVE_MAX))
		qmgr.claim_wanted = true;
	dispatch();
	sched_request_claim();
}

/* Claims when due work waits and the active set has room. */
void
sched_request_claim(void)
{
	size_t room;
	int64_t due;

	if (qmgr.d.draining)
		return;
	room = qmgr.n_active < QMGR_ACTIVE_MAX ? QMGR_ACTIVE_MAX - qmgr.n_active : 0;
	if (room == 0)
		return;
	if (!qmgr.claim_wanted) {
		if (queue_schedule_earliest(qmgr.q, &due) == -1 ||
		    due > queue_now_ms())
			return;
	}
	qmgr.claim_wanted = false;
	store_want_claim(room < QMGR_CLAIM_BATCH ? room : QMGR_CLAIM_BATCH);
	store_kick();
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sched_request_claim();
	sched_arm_poll();
}

/* Wakes at the earliest due time, and at least every QMGR_POLL_MS. */
void
sched_arm_poll(void)
{
	int64_t due, now = queue_now_ms(), wait = QMGR_POLL_MS;
	struct timeval tv;

	if (queue_schedule_earliest(qmgr.q, &due) == 0 && due - now < wait)
		wait = due > now ? due - now : 0;
	/* Work due now, but a claim is already asked for (its end asks for
	 * the next) or the active set is full (a result makes room and asks):
	 * polling at once would spin the loop (epoll_wait with no timeout,
	 * thousands a second) until then; a short pause keeps an eye on it. */
	if (wait == 0 && (store_claim_pending() ||
	    qmgr.n_active >= QMGR_ACTIVE_MAX))
		wait = QMGR_BUSY_POLL_MS;
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	evtimer_add(qmgr.ev_poll, &tv);
}

void
sched_init(void)
{
	qmgr.ev_poll = evtimer_new(qmgr.d.base, poll_cb, NULL);
	if (qmgr.ev_poll == NULL)
		log_fatal("evtimer_new failed");
	qmgr.claim_wanted = true;
	sched_request_claim();
	sched_arm_poll();
}
