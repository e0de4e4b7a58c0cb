/*
 * local_user.c - names the local users on the sendmail socket off the
 * event loop. getpwuid_r may ask a slow directory (LDAP, NIS, SSSD with a
 * cold cache) for a second or more; the loop also serves every SMTP
 * submission, which must not wait for it. One thread does the look-ups
 * in order; the loop starts each connection when its name is known.
 *
 * A client waiting here is known only to this file: no ipc_conn reads
 * from it yet, so the thread may write its peer.user.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

#include "cleanup.h"
#include "log.h"
#include "util.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct client *waiting, **waiting_tail;	/* FIFO, on cl->lookup_next */
	struct client *done;			/* LIFO */
	struct event *ev_done;
	void (*ready)(struct client *);
} lu;

static void *
lookup_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lu.lock);
	for (;;) {
		struct client *cl;

		while (lu.waiting == NULL)
			pthread_cond_wait(&lu.cond, &lu.lock);
		cl = lu.waiting;
		lu.waiting = cl->lookup_next;
		if (lu.waiting == NULL)
			lu.waiting_tail = &lu.waiting;
		pthread_mutex_unlock(&lu.lock);

		peercred_lookup_user(&cl->peer);

		pthread_mutex_lock(&lu.lock);
		cl->lookup_next = lu.done;
		lu.done = cl;
		event_active(lu.ev_done, EV_READ, 0);
	}
	return NULL;
}

/* In the loop: start the clients whose names came. */
static void
lookups_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *list, *next;

	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&lu.lock);
	list = lu.done;
	lu.done = NULL;
	pthread_mutex_unlock(&lu.lock);
	for (struct client *cl = list; cl != NULL; cl = next) {
		next = cl->lookup_next;
		lu.ready(cl);
	}
}

void
local_user_lookup_start(struct event_base *base,
    void (*ready)(struct client *))
{
	pthread_attr_t attr;
	pthread_t tid;

	pthread_mutex_init(&lu.lock, NULL);
	pthread_cond_init(&lu.cond, NULL);
	lu.waiting_tail = &lu.waiting;
	lu.ready = ready;
	lu.ev_done = event_new(base, -1, 0, lookups_done_cb, NULL);
	if (lu.ev_done == NULL)
		log_fatal("event_new failed");
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, lookup_thread, NULL) != 0)
		log_fatal("cannot start the user name look-up thread");
	pthread_attr_destroy(&attr);
}

void
local_user_lookup(struct client *cl)
{
	pthread_mutex_lock(&lu.lock);
	cl->lookup_next = NULL;
	*lu.waiting_tail = cl;
	lu.waiting_tail = &cl->lookup_next;
	pthread_cond_signal(&lu.cond);
	pthread_mutex_unlock(&lu.lock);
}
