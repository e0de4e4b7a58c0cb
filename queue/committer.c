/*
 * committer.c - group commit: a writer thread takes every message handed
 * over while the previous commit was syncing, commits them as one batch
 * (one transaction, one fdatasync), then answers each submitter. Runs in
 * tern-cleanup (and the benchmark); needs write access to the queue.
 */
#include "autoconfig.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"
#include "util.h"

/* A group also stops at this many content bytes (one bigger message
 * still goes, alone). */
#define GROUP_MAX_BYTES		(64u * 1024 * 1024)

struct pending {
	struct queue_msg *msg;
	queue_commit_cb cb;
	void *arg;
};

struct queue_committer {
	struct queue *q;
	size_t max_group;
	struct queue_batch *events;	/* events for the next group, or NULL */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pending *v;		/* FIFO: v[head .. n) */
	size_t head;
	size_t n;
	size_t cap;
	bool stop;
};

/* Takes the next group from the FIFO (the lock is held). */
static size_t
take_group(struct queue_committer *c, struct pending **out)
{
	size_t k = 0;
	uint64_t bytes = 0;
	struct pending *g;

	while (c->head + k < c->n && k < c->max_group) {
		uint64_t size = queue_msg_size(c->v[c->head + k].msg);

		if (k > 0 && bytes + size > GROUP_MAX_BYTES)
			break;
		bytes += size;
		k++;
	}
	g = xreallocarray(NULL, k ? k : 1, sizeof(*g));
	if (k > 0)
		memcpy(g, c->v + c->head, k * sizeof(*g));
	c->head += k;
	if (c->head == c->n)
		c->head = c->n = 0;
	*out = g;
	return k;
}

static void *
committer_main(void *arg)
{
	struct queue_committer *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct pending *g;
		struct queue_batch *b;
		size_t k, i;

		while (c->head == c->n && c->events == NULL && !c->stop)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->head == c->n && c->events == NULL && c->stop)
			break;
		k = take_group(c, &g);
		/* Pending events ride along with this group. */
		b = c->events != NULL ? c->events : queue_batch_new();
		c->events = NULL;
		pthread_mutex_unlock(&c->lock);

		for (i = 0; i < k; i++)
			queue_batch_add(b, g[i].msg);
		(void)queue_batch_commit(c->q, b);
		/* Answers go out only now, after the synced commit. */
		for (i = 0; i < k; i++)
			g[i].cb(g[i].arg, queue_batch_status(b, i),
			    queue_batch_qid(b, i));
		queue_batch_free(b);
		free(g);

		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct queue_committer *
queue_committer_start(struct queue *q, size_t max_group)
{
	struct queue_committer *c = xcalloc(1, sizeof(*c));
	int rc;

	c->q = q;
	c->max_group = max_group > 0 ? max_group : 1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if ((rc = pthread_create(&c->thread, NULL, committer_main, c)) != 0)
		log_fatal("queue: cannot start the committer thread: %s",
		    strerror(rc));
	return c;
}

void
queue_committer_submit(struct queue_committer *c, struct queue_msg *m,
    queue_commit_cb cb, void *arg)
{
	pthread_mutex_lock(&c->lock);
	TERN_ASSERT(!c->stop);
	if (c->n == c->cap) {
		if (c->head > 0) {
			memmove(c->v, c->v + c->head,
			    (c->n - c->head) * sizeof(*c->v));
			c->n -= c->head;
			c->head = 0;
		}
		if (c->n == c->cap) {
			c->cap = c->cap ? c->cap * 2 : 64;
			c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
		}
	}
	c->v[c->n].msg = m;
	c->v[c->n].cb = cb;
	c->v[c->n].arg = arg;
	c->n++;
	pthread_mutex_unlock(&c->lock);
	/* After the unlock: the committer wakes to a free mutex. */
	pthread_cond_signal(&c->cond);
}

void
queue_committer_submit_event(struct queue_committer *c,
    const struct queue_event *e)
{
	pthread_mutex_lock(&c->lock);
	TERN_ASSERT(!c->stop);
	if (c->events == NULL)
		c->events = queue_batch_new();
	queue_batch_add_event(c->events, e);
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	enum queue_err status;
	uint64_t qid;
};

static void
waiter_done(void *arg, enum queue_err status, uint64_t qid)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->lock);
	w->status = status;
	w->qid = qid;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

enum queue_err
queue_committer_submit_wait(struct queue_committer *c, struct queue_msg *m,
    uint64_t *qid)
{
	struct waiter w;

	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	queue_committer_submit(c, m, waiter_done, &w);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	if (qid != NULL)
		*qid = w.status == QUEUE_OK ? w.qid : 0;
	return w.status;
}

void
queue_committer_stop(struct queue_committer *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->v);
	free(c);
}
