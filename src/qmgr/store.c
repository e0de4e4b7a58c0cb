/*
 * store.c - tern-qmgr's writer thread. Every write to the queue (results,
 * claims, flushes, operator changes, purges) is done here, so the event
 * loop never waits for an fsync. Group commit: while the writer commits
 * one group of changes, the loop gathers the next; each change's callback
 * runs on the loop only after the commit that holds it.
 *
 * A commit the queue has no room for (map at map_size_max, disk full)
 * is held: its group stays in memory with its callbacks, nothing new is
 * claimed or sent, and the same group is committed again after a backoff
 * (policy_full_retry_ms()) before anything gathered since. Any other
 * failed commit cannot be retried safely here (the group's recipients
 * stay ACTIVE in the store); qmgr exits and the master restarts it, and
 * queue_requeue_active() makes them due again: a duplicate, never a loss.
 * The same holds when qmgr stops while a group is still held.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmgr.h"
#include "util.h"

struct tracked {
	size_t op;
	uint64_t qid;
	store_op_cb cb;
	void *arg;
};

/* One unit of work for the writer: a group of changes, then a flush,
 * a claim and maintenance, each optional. */
struct work {
	struct queue_update *u;
	struct tracked *tr;
	size_t n_tr;
	int update_rc;
	enum queue_err update_err;	/* why it failed (the error is the
					 * writer thread's own) */
	bool flush;
	uint64_t flush_qid;
	store_flush_cb flush_cb;
	void *flush_arg;
	int flush_rc;
	enum queue_err flush_err;
	size_t flushed;
	size_t claim_max;
	struct queue_claim *claim;
	int claim_rc;
	enum queue_err claim_err;
	bool claimed;			/* in the update's transaction */
	bool maintenance;
	int64_t now_ms;
};

static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct event *ev_done;
	struct work *todo;		/* handed to the writer */
	struct work *done;		/* finished, for the loop */
	bool busy;			/* a work is out */
	bool busy_claim;		/* ... and it claims */
	bool stop;
	/* what the loop is gathering */
	struct work *next;
	/* The group the queue had no room for: committed again, first. */
	struct work *held;
	struct event *ev_retry;
	bool retry_due;			/* the backoff has passed */
	int64_t retry_ms;		/* the last backoff */
	int64_t full_since_ms;		/* 0: the queue is not full */
	bool claim_full_warned;		/* a claim found the queue full */
} st;

static struct work *
next_work(void)
{
	if (st.next == NULL)
		st.next = xcalloc(1, sizeof(*st.next));
	return st.next;
}

struct queue_update *
store_group(void)
{
	struct work *w = next_work();

	if (w->u == NULL)
		w->u = queue_update_new(queue_now_ms());
	return w->u;
}

void
store_track(uint64_t qid, store_op_cb cb, void *arg)
{
	struct work *w = next_work();

	TERN_ASSERT(w->u != NULL && queue_update_count(w->u) > 0);
	w->tr = xreallocarray(w->tr, w->n_tr + 1, sizeof(*w->tr));
	w->tr[w->n_tr].op = queue_update_count(w->u) - 1;
	w->tr[w->n_tr].qid = qid;
	w->tr[w->n_tr].cb = cb;
	w->tr[w->n_tr].arg = arg;
	w->n_tr++;
}

void
store_want_claim(size_t max)
{
	struct work *w = next_work();

	if (max > w->claim_max)
		w->claim_max = max;
}

void
store_want_flush(uint64_t qid, store_flush_cb cb, void *arg)
{
	struct work *w = next_work();

	/* One flush per group; a second waits for the next group. */
	if (w->flush) {
		cb(arg, -2, QUEUE_OK, 0);
		return;
	}
	w->flush = true;
	w->flush_qid = qid;
	w->flush_cb = cb;
	w->flush_arg = arg;
}

void
store_want_maintenance(void)
{
	next_work()->maintenance = true;
}

bool
store_full(void)
{
	return st.full_since_ms != 0;
}

bool
store_claim_pending(void)
{
	return (st.busy && st.busy_claim) ||
	    (st.held != NULL && st.held->claim_max > 0) ||
	    (st.next != NULL && st.next->claim_max > 0);
}

bool
store_busy(void)
{
	return st.busy || st.held != NULL || (st.next != NULL &&
	    (st.next->u != NULL || st.next->flush || st.next->claim_max > 0 ||
	    st.next->maintenance));
}

static void
maintenance(struct work *w)
{
	const struct tern_config *cfg = qmgr.d.cfg;
	size_t n = 0;
	int cleared = 0;

	if (queue_reader_check(qmgr.q, &cleared) == 0 && cleared > 0)
		log_info("cleared %d stale queue reader slot(s)", cleared);
	if (cfg->queue.event_retention > 0) {
		if (queue_events_purge(qmgr.q, w->now_ms -
		    cfg->queue.event_retention * 1000, &n) == -1)
			log_warn("event purge: %s",
			    queue_strerror(queue_last_error()));
		else if (n > 0)
			log_info("purged %zu event(s) older than event_retention", n);
	}
	if (queue_suppress_purge(qmgr.q, w->now_ms, &n) == -1)
		log_warn("suppression purge: %s",
		    queue_strerror(queue_last_error()));
	else if (n > 0)
		log_info("purged %zu expired suppression entr%s", n,
		    n == 1 ? "y" : "ies");
	if (queue_softfail_purge(qmgr.q, w->now_ms -
	    qmgr.supp_policy.soft_window_ms, &n) == -1)
		log_warn("soft-bounce count purge: %s",
		    queue_strerror(queue_last_error()));
}

static void *
writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&st.lock);
	for (;;) {
		struct work *w;

		while (st.todo == NULL && !st.stop)
			pthread_cond_wait(&st.cond, &st.lock);
		if (st.todo == NULL)
			break;
		w = st.todo;
		st.todo = NULL;
		pthread_mutex_unlock(&st.lock);

		w->now_ms = queue_now_ms();
		/* Results and a claim without a flush between them: one
		 * transaction, one sync (and one turn at the queue's write
		 * lock, which tern-cleanup's committer shares). Whatever goes
		 * wrong there, the two are done apart as before. */
		if (w->u != NULL && queue_update_count(w->u) > 0 &&
		    w->claim_max > 0 && !w->flush &&
		    queue_update_commit_claim(qmgr.q, w->u, queue_now_ms(),
		    w->claim_max, &w->claim) == 0) {
			w->update_rc = 0;
			w->claim_rc = 0;
			w->claimed = true;
		} else if (w->u != NULL && queue_update_count(w->u) > 0 &&
		    (w->update_rc = queue_update_commit(qmgr.q, w->u)) == -1)
			w->update_err = queue_last_error();
		if (w->update_rc == 0 && w->flush) {
			w->flush_rc = queue_flush(qmgr.q, w->flush_qid,
			    queue_now_ms(), &w->flushed);
			if (w->flush_rc == -1)
				w->flush_err = queue_last_error();
		}
		if (w->update_rc == 0 && w->claim_max > 0 && !w->claimed) {
			w->claim_rc = queue_claim_due(qmgr.q, queue_now_ms(),
			    w->claim_max, &w->claim);
			if (w->claim_rc == -1)
				w->claim_err = queue_last_error();
		}
		if (w->update_rc == 0 && w->maintenance)
			maintenance(w);

		/* No wait for the loop to take it: the next work comes only
		 * after done_cb() (st.busy), so the writer sleeps once per work
		 * instead of waking again just to learn that done was taken. */
		pthread_mutex_lock(&st.lock);
		st.done = w;
		event_active(st.ev_done, EV_READ, 0);
	}
	pthread_mutex_unlock(&st.lock);
	return NULL;
}

static void
work_free(struct work *w)
{
	if (w->u != NULL)
		queue_update_free(w->u);
	if (w->claim != NULL)
		queue_claim_free(w->claim);
	free(w->tr);
	free(w);
}

/* A work that will not be committed: its callbacks learn why. */
static void
work_fail(struct work *w, enum queue_err e)
{
	for (size_t i = 0; i < w->n_tr; i++)
		if (w->tr[i].cb != NULL)
			w->tr[i].cb(w->tr[i].arg, e, false);
	if (w->flush && w->flush_cb != NULL)
		w->flush_cb(w->flush_arg, -1, e, 0);
	work_free(w);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	st.retry_due = true;
	store_kick();
}

/*
 * The queue had no room for w's group: keep it, with its callbacks, and
 * commit it again later, before anything gathered since (claims wait
 * too: nothing new goes out while results cannot be stored). One
 * warning when the queue fills up, one line when it has room again.
 * Stopping with nothing left in flight, this was the last try.
 */
static void
hold(struct work *w)
{
	size_t n = queue_update_count(w->u);
	enum queue_err e = w->update_err;
	struct timeval tv;

	w->update_rc = 0;
	w->update_err = QUEUE_OK;
	if (qmgr.d.draining && qmgr.n_in_flight == 0) {
		size_t later = st.next != NULL && st.next->u != NULL ?
		    queue_update_count(st.next->u) : 0;

		log_warn("stopping with %zu change(s) not committed (%s): the "
		    "recipients they concern are due again at the next start",
		    n + later, queue_strerror(e));
		work_fail(w, e);
		if (st.next != NULL) {
			struct work *next = st.next;

			st.next = NULL;
			work_fail(next, e);
		}
		daemon_exit(&qmgr.d);
		return;
	}
	st.held = w;
	if (st.full_since_ms == 0) {
		st.full_since_ms = queue_now_ms();
		st.retry_ms = 0;
		log_warn("queue full (%s): %zu change(s) not committed; holding "
		    "them and the results to come in memory, claiming and sending "
		    "nothing new, and trying again (every %d s at most) until it "
		    "has room", queue_strerror(e), n,
		    POLICY_FULL_RETRY_MAX_MS / 1000);
	}
	st.retry_ms = policy_full_retry_ms(st.retry_ms);
	log_debug("queue full: %zu change(s) held, next try in %lld ms", n,
	    (long long)st.retry_ms);
	tv.tv_sec = st.retry_ms / 1000;
	tv.tv_usec = (st.retry_ms % 1000) * 1000;
	st.retry_due = false;
	evtimer_add(st.ev_retry, &tv);
}

/* On the loop: the writer finished a work. */
static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct work *w;
	bool resumed = false;

	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&st.lock);
	w = st.done;
	st.done = NULL;
	pthread_mutex_unlock(&st.lock);
	if (w == NULL)
		return;
	st.busy = false;

	if (w->update_rc != 0) {
		if ((w->update_err == QUEUE_ERR_FULL ||
		    w->update_err == QUEUE_ERR_NOSPACE) &&
		    !queue_is_broken(qmgr.q)) {
			hold(w);
			return;
		}
		/* Nothing of the group was committed; start over from the
		 * store after a restart rather than guess. */
		log_fatal("queue commit of %zu change(s) failed: %s; restarting "
		    "so in-flight recipients are requeued",
		    queue_update_count(w->u), queue_strerror(w->update_err));
	}
	if (st.full_since_ms != 0) {
		log_info("queue has space again: committed %zu change(s) after "
		    "%lld s", queue_update_count(w->u), (long long)
		    ((queue_now_ms() - st.full_since_ms + 500) / 1000));
		st.full_since_ms = 0;
		st.retry_ms = 0;
		resumed = true;
	}
	for (size_t i = 0; i < w->n_tr; i++) {
		struct tracked *t = &w->tr[i];
		bool removed = queue_update_removed(w->u, t->op);

		if (removed) {
			char id[QUEUE_ID_LEN + 1];

			queue_id_format(t->qid, id);
			log_info("%s: removed", id);
		}
		if (t->cb != NULL)
			t->cb(t->arg, queue_update_status(w->u, t->op), removed);
	}
	if (w->flush && w->flush_cb != NULL)
		w->flush_cb(w->flush_arg, w->flush_rc, w->flush_err,
		    w->flushed);
	if (w->claim_max > 0) {
		if (w->claim_rc == -1) {
			/* A full queue is tried again at every poll: one
			 * warning until a claim goes through. */
			bool full = w->claim_err == QUEUE_ERR_FULL ||
			    w->claim_err == QUEUE_ERR_NOSPACE;

			if (full && st.claim_full_warned)
				log_debug("claiming due work: %s",
				    queue_strerror(w->claim_err));
			else
				log_warn("claiming due work: %s%s",
				    queue_strerror(w->claim_err), full ?
				    "; trying again at every poll" : "");
			st.claim_full_warned = full;
			if (queue_is_broken(qmgr.q))
				log_fatal("the queue is broken (MDB_PANIC); restarting");
		} else {
			st.claim_full_warned = false;
			sched_claimed(w->claim, queue_now_ms());
		}
	}
	if (queue_is_broken(qmgr.q))
		log_fatal("the queue is broken (MDB_PANIC); restarting");
	work_free(w);
	store_kick();
	/* Jobs claimed before the queue filled up may go out now. */
	if (resumed)
		dispatch();
	qmgr_maybe_exit();
}

void
store_kick(void)
{
	struct work *w = st.next;

	if (st.busy)
		return;
	if (st.held != NULL) {
		/* Stopping with nothing in flight: the last try, now. */
		if (!st.retry_due && !(qmgr.d.draining && qmgr.n_in_flight == 0))
			return;
		evtimer_del(st.ev_retry);
		st.retry_due = false;
		w = st.held;
		st.held = NULL;
	} else {
		if (w == NULL)
			return;
		if (w->u == NULL && !w->flush && w->claim_max == 0 &&
		    !w->maintenance)
			return;
		st.next = NULL;
	}
	st.busy = true;
	st.busy_claim = w->claim_max > 0;
	pthread_mutex_lock(&st.lock);
	st.todo = w;
	pthread_mutex_unlock(&st.lock);
	/* After the unlock: the writer wakes to a free mutex. */
	pthread_cond_signal(&st.cond);
}

void
store_start(void)
{
	pthread_mutex_init(&st.lock, NULL);
	pthread_cond_init(&st.cond, NULL);
	st.ev_done = event_new(qmgr.d.base, -1, 0, done_cb, NULL);
	st.ev_retry = evtimer_new(qmgr.d.base, retry_cb, NULL);
	if (st.ev_done == NULL || st.ev_retry == NULL)
		log_fatal("event_new failed");
	if (pthread_create(&st.thread, NULL, writer_main, NULL) != 0)
		log_fatal("cannot start the queue writer thread");
}

void
store_stop(void)
{
	pthread_mutex_lock(&st.lock);
	st.stop = true;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
	pthread_join(st.thread, NULL);
	event_free(st.ev_done);
	event_free(st.ev_retry);
	if (st.held != NULL)
		work_free(st.held);
	st.held = NULL;
	if (st.next != NULL)
		work_free(st.next);
	st.next = NULL;
}
