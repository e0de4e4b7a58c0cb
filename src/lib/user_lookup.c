/*
 * user_lookup.c - the look-up threads that name local users off the
 * event loop (see user_lookup.h). Runs in tern-cleanup and tern-pickup,
 * with their privilege (tern's user).
 */
#include "autoconfig.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "user_lookup.h"
#include "util.h"

struct user_lookup {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct user_lookup_req *waiting, **waiting_tail;	/* FIFO */
	struct user_lookup_req *done, **done_tail;		/* FIFO */
	struct event *ev_done;
	void (*ready)(struct user_lookup_req *);
};

static void *
lookup_thread(void *arg)
{
	struct user_lookup *ul = arg;

	pthread_mutex_lock(&ul->lock);
	for (;;) {
		struct user_lookup_req *req;

		while (ul->waiting == NULL)
			pthread_cond_wait(&ul->cond, &ul->lock);
		req = ul->waiting;
		ul->waiting = req->next;
		if (ul->waiting == NULL)
			ul->waiting_tail = &ul->waiting;
		pthread_mutex_unlock(&ul->lock);

		peercred_lookup_user(req->id);

		pthread_mutex_lock(&ul->lock);
		req->next = NULL;
		*ul->done_tail = req;
		ul->done_tail = &req->next;
		event_active(ul->ev_done, EV_READ, 0);
	}
	return NULL;
}

/* In the loop: hand back the requests whose names came. */
static void
lookups_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct user_lookup *ul = arg;
	struct user_lookup_req *list, *next;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&ul->lock);
	list = ul->done;
	ul->done = NULL;
	ul->done_tail = &ul->done;
	pthread_mutex_unlock(&ul->lock);
	for (struct user_lookup_req *req = list; req != NULL; req = next) {
		next = req->next;
		ul->ready(req);
	}
}

struct user_lookup *
user_lookup_new(struct event_base *base,
    void (*ready)(struct user_lookup_req *req))
{
	struct user_lookup *ul = xcalloc(1, sizeof(*ul));
	pthread_attr_t attr;

	pthread_mutex_init(&ul->lock, NULL);
	pthread_cond_init(&ul->cond, NULL);
	ul->waiting_tail = &ul->waiting;
	ul->done_tail = &ul->done;
	ul->ready = ready;
	ul->ev_done = event_new(base, -1, 0, lookups_done_cb, ul);
	if (ul->ev_done == NULL)
		log_fatal("event_new failed");
	/* Detached: at exit a thread may still wait on the directory. */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < USER_LOOKUP_THREADS; i++) {
		pthread_t tid;

		if (pthread_create(&tid, &attr, lookup_thread, ul) != 0)
			log_fatal("cannot start the user name look-up threads");
	}
	pthread_attr_destroy(&attr);
	return ul;
}

void
user_lookup_submit(struct user_lookup *ul, struct user_lookup_req *req,
    struct peer_identity *id, void *arg)
{
	req->id = id;
	req->arg = arg;
	req->next = NULL;
	pthread_mutex_lock(&ul->lock);
	*ul->waiting_tail = req;
	ul->waiting_tail = &req->next;
	pthread_cond_signal(&ul->cond);
	pthread_mutex_unlock(&ul->lock);
}
