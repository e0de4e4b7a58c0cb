/*
 * dest.c - destinations (recipient domains) and dispatch: a job goes to
 * an agent that granted a credit, within [delivery] max_connections jobs
 * in flight in all, max_connections_per_destination (or [destination X]
 * max_connections) per domain, and the [destination X] rate. Domains take
 * turns, so one large destination does not starve the others.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmgr.h"
#include "util.h"

#define DEST_BUCKETS	4096

static struct dest *buckets[DEST_BUCKETS];

static unsigned
dest_hash(const char *s)
{
	unsigned h = 5381;

	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h % DEST_BUCKETS;
}

static void
rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;

	(void)fd;
	(void)what;
	if (d->n_pending > 0 && !d->in_ready) {
		TAILQ_INSERT_TAIL(&qmgr.ready, d, ready_entry);
		d->in_ready = true;
	}
	dispatch();
}

struct dest *
dest_get(const char *domain)
{
	char *name = xstrdup(domain);
	const struct cfg_destination *cd;
	unsigned h;
	struct dest *d;

	ascii_lowercase(name);
	h = dest_hash(name);
	for (d = buckets[h]; d != NULL; d = d->hnext)
		if (strcmp(d->name, name) == 0) {
			free(name);
			return d;
		}
	d = xcalloc(1, sizeof(*d));
	d->name = name;
	TAILQ_INIT(&d->pending);
	d->limit = qmgr.d.cfg->delivery.max_connections_per_destination;
	cd = config_find_destination(qmgr.d.cfg, name);
	if (cd != NULL) {
		if (cd->max_connections > 0)
			d->limit = cd->max_connections;
		d->rate_count = cd->rate_count;
		d->rate_period = cd->rate_period;
		d->tokens = cd->rate_count;
		d->tokens_usec = tern_monotonic_usec();
	}
	d->ev_rate = evtimer_new(qmgr.d.base, rate_cb, d);
	if (d->ev_rate == NULL)
		log_fatal("evtimer_new failed");
	d->hnext = buckets[h];
	buckets[h] = d;
	return d;
}

/* Idle destinations go, so memory follows the active set, not history.
 * A rate-limited one stays while its bucket is refilling. */
static void
dest_maybe_free(struct dest *d)
{
	struct dest **pp;

	if (d->n_pending > 0 || d->in_flight > 0 || d->building != NULL ||
	    d->in_ready || evtimer_pending(d->ev_rate, NULL))
		return;
	if (d->rate_period > 0 && d->tokens < d->rate_count)
		return;
	for (pp = &buckets[dest_hash(d->name)]; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == d) {
			*pp = d->hnext;
			break;
		}
	event_free(d->ev_rate);
	free(d->name);
	free(d);
}

/* Keeps the destination's pace: recipients sent per second over
 * windows of about a minute. */
static void
dest_pace(struct dest *d, size_t n)
{
	uint64_t now = tern_monotonic_usec();

	d->sent_rcpts += n;
	if (d->pace_usec == 0) {
		d->pace_usec = now;
		d->pace_mark = d->sent_rcpts - n;
		return;
	}
	if (now - d->pace_usec >= 60 * 1000000ull) {
		d->pace = (double)(d->sent_rcpts - d->pace_mark) * 1e6 /
		    (double)(now - d->pace_usec);
		d->pace_usec = now;
		d->pace_mark = d->sent_rcpts;
	}
}

int64_t
dest_wait_ms(const struct dest *d)
{
	double pace = d->pace;
	uint64_t now = tern_monotonic_usec();
	int64_t wait;

	/* Within the first window, what was sent so far gives the pace. */
	if (pace <= 0 && d->pace_usec != 0 && now - d->pace_usec >= 1000000)
		pace = (double)(d->sent_rcpts - d->pace_mark) * 1e6 /
		    (double)(now - d->pace_usec);
	if (pace <= 0)		/* nothing sent yet (a start): look again soon */
		return QMGR_DEST_WAIT_MIN_MS;
	wait = (int64_t)((double)d->pending_rcpts / pace * 1000.0);
	if (wait < QMGR_DEST_WAIT_MIN_MS)
		wait = QMGR_DEST_WAIT_MIN_MS;
	if (wait > QMGR_DEST_WAIT_MAX_MS)
		wait = QMGR_DEST_WAIT_MAX_MS;
	return wait;
}

void
dest_push(struct dest *d, struct job *j)
{
	TAILQ_INSERT_TAIL(&d->pending, j, entry);
	d->n_pending++;
	if (!d->in_ready) {
		TAILQ_INSERT_TAIL(&qmgr.ready, d, ready_entry);
		d->in_ready = true;
	}
}

void
dest_job_finished(struct dest *d)
{
	TERN_ASSERT(d->in_flight > 0);
	d->in_flight--;
	if (d->n_pending > 0 && !d->in_ready) {
		TAILQ_INSERT_TAIL(&qmgr.ready, d, ready_entry);
		d->in_ready = true;
	}
	dest_maybe_free(d);
}

/* Refills the token bucket; true when a job may go now, else the rate
 * timer is armed for the next token. */
static bool
dest_rate_ok(struct dest *d)
{
	uint64_t now;
	double per_usec;

	if (d->rate_period == 0 || d->rate_count == 0)
		return true;
	now = tern_monotonic_usec();
	per_usec = (double)d->rate_count / ((double)d->rate_period * 1e6);
	d->tokens += (double)(now - d->tokens_usec) * per_usec;
	if (d->tokens > d->rate_count)
		d->tokens = d->rate_count;
	d->tokens_usec = now;
	if (d->tokens >= 1.0)
		return true;
	if (!evtimer_pending(d->ev_rate, NULL)) {
		uint64_t wait = (uint64_t)((1.0 - d->tokens) / per_usec) + 1;
		struct timeval tv = { (time_t)(wait / 1000000),
		    (suseconds_t)(wait % 1000000) };

		evtimer_add(d->ev_rate, &tv);
	}
	return false;
}

static void
ready_remove(struct dest *d)
{
	TAILQ_REMOVE(&qmgr.ready, d, ready_entry);
	d->in_ready = false;
}

void
dispatch(void)
{
	struct dest *d;

	/* A full queue: no new delivery whose result could not be kept. */
	if (qmgr.d.draining || store_full())
		return;
	while ((d = TAILQ_FIRST(&qmgr.ready)) != NULL) {
		struct agent *a;
		struct job *j;

		if (qmgr.n_in_flight >= qmgr.max_connections)
			return;
		if ((a = agent_pick()) == NULL)
			return;
		ready_remove(d);
		if (d->n_pending == 0)
			continue;
		/* At its limit: back in line when one of its jobs ends. */
		if (d->in_flight >= d->limit || !dest_rate_ok(d))
			continue;
		j = TAILQ_FIRST(&d->pending);
		TAILQ_REMOVE(&d->pending, j, entry);
		d->n_pending--;
		d->pending_rcpts -= j->n_rcpts;
		dest_pace(d, j->n_rcpts);
		if (d->rate_period > 0)
			d->tokens -= 1.0;
		d->in_flight++;
		qmgr.n_in_flight++;
		agent_send_job(a, j);
		if (d->n_pending > 0) {
			TAILQ_INSERT_TAIL(&qmgr.ready, d, ready_entry);
			d->in_ready = true;
		}
	}
}

/* Forgets the jobs of qid not yet sent (deleted or held); a hold gives
 * their recipients back to the store, where the hold keeps them. */
void
dest_drop_qid(uint64_t qid, bool unclaim)
{
	for (unsigned h = 0; h < DEST_BUCKETS; h++) {
		struct dest *d, *dnext;

		for (d = buckets[h]; d != NULL; d = dnext) {
			struct job *j, *jnext;

			dnext = d->hnext;
			for (j = TAILQ_FIRST(&d->pending); j != NULL; j = jnext) {
				jnext = TAILQ_NEXT(j, entry);
				if (j->qid != qid)
					continue;
				TAILQ_REMOVE(&d->pending, j, entry);
				d->n_pending--;
				d->pending_rcpts -= j->n_rcpts;
				for (size_t i = 0; unclaim && i < j->n_rcpts; i++) {
					queue_update_unclaim(store_group(), qid,
					    j->rcpts[i].index, queue_now_ms());
					store_track(qid, NULL, NULL);
				}
				job_free(j);
			}
			if (d->n_pending == 0 && d->in_ready)
				ready_remove(d);
			dest_maybe_free(d);
		}
	}
	store_kick();
}

/* Draining: every job not yet sent goes back to the schedule, due now. */
void
dest_unclaim_all(void)
{
	int64_t now = queue_now_ms();

	for (unsigned h = 0; h < DEST_BUCKETS; h++) {
		struct dest *d, *dnext;

		for (d = buckets[h]; d != NULL; d = dnext) {
			struct job *j;

			dnext = d->hnext;
			while ((j = TAILQ_FIRST(&d->pending)) != NULL) {
				TAILQ_REMOVE(&d->pending, j, entry);
				d->n_pending--;
				d->pending_rcpts -= j->n_rcpts;
				for (size_t i = 0; i < j->n_rcpts; i++) {
					queue_update_unclaim(store_group(), j->qid,
					    j->rcpts[i].index, now);
					store_track(j->qid, NULL, NULL);
				}
				job_free(j);
			}
			if (d->in_ready)
				ready_remove(d);
			dest_maybe_free(d);
		}
	}
	store_kick();
}
