/*
 * user_lookup.h - names local users (uid -> login name with
 * peercred_lookup_user, i.e. getpwuid_r) off a daemon's event loop.
 * getpwuid_r may ask a slow directory (LDAP, NIS, SSSD with a cold
 * cache) for a second or more, or hang; the loop must not wait for it.
 * A few threads take the requests in order, so one look-up that hangs
 * holds up only itself; the loop gets each request back once its name
 * is known. Used by tern-cleanup (users on the sendmail socket) and
 * tern-pickup (the owners of maildrop files).
 */
#ifndef TERN_USER_LOOKUP_H
#define TERN_USER_LOOKUP_H

#include <event2/event.h>

#include "peercred.h"

/* Look-ups that may hang at once before the others wait too. */
#define USER_LOOKUP_THREADS	4

struct user_lookup;

/*
 * One request, held by its caller (in the object it names). Between
 * user_lookup_submit() and ready() a thread may write id->user: the
 * caller must not touch *id, nor free the request, meanwhile.
 */
struct user_lookup_req {
	struct peer_identity *id;	/* named from id->uid into id->user */
	void *arg;			/* the caller's */
	struct user_lookup_req *next;	/* the queue's */
};

/* Starts the threads; ready(req) runs in base's loop for each request
 * whose name is known. */
struct user_lookup *user_lookup_new(struct event_base *base,
    void (*ready)(struct user_lookup_req *req));
/* Queues req to have id named; ready(req) follows in the loop. */
void user_lookup_submit(struct user_lookup *ul, struct user_lookup_req *req,
    struct peer_identity *id, void *arg);

#endif
