/*
 * bounce.c - tern-bounce's side of qmgr's socket (IPC_BOUNCE_*). qmgr
 * keeps a bounded FIFO of queue ids whose messages have recipients with a
 * DSN flag (after the commit that set it, or when a claim finds one) and
 * hands one per credit to tern-bounce, which reads the message itself.
 * When bounce reports which DSNs cleanup committed, qmgr clears those
 * flags in its next group (queue_update_dsn_done) and hands that message
 * out again only after that commit, so bounce never sees a flag it has
 * already served. Nothing is lost: a recipient whose notice does not fit
 * the FIFO is given back to the schedule for later, a work in flight
 * when bounce goes away is queued again, and at restart the claim finds
 * every DSN flag once more (a DSN may be repeated, never lost).
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmgr.h"
#include "util.h"

#define FIFO_MAX	10000		/* queue ids waiting for bounce */
#define RETRY_SEC	60		/* a work bounce could not finish */

struct bentry {
	uint64_t qid;
	bool feedback;			/* an inbound message to parse */
};

struct bwork {
	uint32_t id;			/* reqid of BOUNCE_WORK */
	uint64_t qid;
	bool feedback;
	bool committing;		/* answered; its dsn_done not yet committed */
	struct bwork *next;
};

static struct {
	struct conn *conn;		/* the connected tern-bounce, or NULL */
	uint32_t credits;
	struct bentry *fifo;		/* ring of queue ids */
	size_t head, n;
	struct bwork *in_flight;	/* sent, not yet answered or committed */
	uint32_t next_id;
	struct bentry *later;		/* retried after RETRY_SEC */
	size_t n_later;
	struct event *ev_later;
} bq;

static bool
fifo_push(uint64_t qid, bool feedback)
{
	if (bq.fifo == NULL)
		bq.fifo = xcalloc(FIFO_MAX, sizeof(*bq.fifo));
	/* Results of one job come together: one notice per message. */
	for (size_t i = 0; i < bq.n && i < 8; i++) {
		struct bentry *e = &bq.fifo[(bq.head + bq.n - 1 - i) % FIFO_MAX];

		if (e->qid == qid && e->feedback == feedback)
			return true;
	}
	if (bq.n == FIFO_MAX)
		return false;
	bq.fifo[(bq.head + bq.n) % FIFO_MAX].qid = qid;
	bq.fifo[(bq.head + bq.n) % FIFO_MAX].feedback = feedback;
	bq.n++;
	return true;
}

static bool
is_in_flight(uint64_t qid)
{
	for (struct bwork *w = bq.in_flight; w != NULL; w = w->next)
		if (w->qid == qid)
			return true;
	return false;
}

/* Hands out works while bounce has credits; a message already out
 * waits for its answer (and its commit) first. */
static void
bounce_dispatch(void)
{
	size_t scanned = 0;

	while (bq.conn != NULL && bq.credits > 0 && bq.n > 0 &&
	    scanned < bq.n) {
		uint64_t qid = bq.fifo[bq.head].qid;
		bool feedback = bq.fifo[bq.head].feedback;
		struct bwork *w;
		struct ipc_out *o;
		char id[QUEUE_ID_LEN + 1];

		bq.head = (bq.head + 1) % FIFO_MAX;
		bq.n--;
		if (is_in_flight(qid)) {
			fifo_push(qid, feedback);
			scanned++;
			continue;
		}
		scanned = 0;
		w = xcalloc(1, sizeof(*w));
		if (++bq.next_id == 0)
			bq.next_id = 1;
		w->id = bq.next_id;
		w->qid = qid;
		w->feedback = feedback;
		w->next = bq.in_flight;
		bq.in_flight = w;
		bq.credits--;
		queue_id_format(qid, id);
		o = ipc_out_new(feedback ? IPC_BOUNCE_FEEDBACK : IPC_BOUNCE_WORK,
		    w->id);
		ipc_put_str(o, id);
		ipc_conn_send(bq.conn->ipc, o);
	}
}

void
bounce_notify(uint64_t qid, uint32_t rcpt, bool final)
{
	if (fifo_push(qid, false)) {
		bounce_dispatch();
		return;
	}
	/* No room: a final recipient goes back to the schedule and its
	 * next claim notifies again; a deferred one is claimed anyway. */
	if (final) {
		queue_update_unclaim(store_group(), qid, rcpt,
		    queue_now_ms() + RETRY_SEC * 1000);
		store_track(qid, NULL, NULL);
		store_kick();
	}
}

/* An inbound message (its recipients claimed) is for tern-bounce to
 * parse, never to deliver. No room: it waits in the schedule. */
void
bounce_feedback(const struct queue_loaded_msg *lm)
{
	if (fifo_push(lm->info.qid, true)) {
		bounce_dispatch();
		return;
	}
	for (size_t i = 0; i < lm->n_rcpts; i++) {
		queue_update_unclaim(store_group(), lm->info.qid,
		    lm->rcpts[i].index, queue_now_ms() + RETRY_SEC * 1000);
		store_track(lm->info.qid, NULL, NULL);
	}
	store_kick();
}

static void
later_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t n = bq.n_later;
	struct bentry *later = bq.later;

	(void)fd;
	(void)what;
	(void)arg;
	bq.later = NULL;
	bq.n_later = 0;
	for (size_t i = 0; i < n; i++)
		if (!fifo_push(later[i].qid, later[i].feedback))
			log_warn("bounce work list full; DSNs wait for the next "
			    "claim or restart");
	free(later);
	bounce_dispatch();
}

static void
retry_later(uint64_t qid, bool feedback)
{
	struct timeval tv = { RETRY_SEC, 0 };

	if (bq.ev_later == NULL) {
		bq.ev_later = evtimer_new(qmgr.d.base, later_cb, NULL);
		if (bq.ev_later == NULL)
			log_fatal("evtimer_new failed");
	}
	if (bq.n_later >= FIFO_MAX)
		return;		/* the flags stay; the next claim finds them */
	bq.later = xreallocarray(bq.later, bq.n_later + 1, sizeof(*bq.later));
	bq.later[bq.n_later].qid = qid;
	bq.later[bq.n_later++].feedback = feedback;
	if (!evtimer_pending(bq.ev_later, NULL))
		evtimer_add(bq.ev_later, &tv);
}

static struct bwork *
take_work(uint32_t id)
{
	for (struct bwork **p = &bq.in_flight; *p != NULL; p = &(*p)->next)
		if ((*p)->id == id) {
			struct bwork *w = *p;

			*p = w->next;
			return w;
		}
	return NULL;
}

/* The DSN flags of a work are cleared: its message may go out again. */
static void
done_committed(void *arg, enum queue_err status, bool removed)
{
	struct bwork *w = arg;

	(void)removed;
	if (status != QUEUE_OK && status != QUEUE_ERR_NOTFOUND) {
		char id[QUEUE_ID_LEN + 1];

		queue_id_format(w->qid, id);
		log_warn("%s: clearing DSN flags: %s", id, queue_strerror(status));
	}
	/* The last operation of the work is the one tracked. */
	if (take_work(w->id) != NULL)
		free(w);
	bounce_dispatch();
}

static void
bounce_done(struct ipc_msg *m)
{
	struct bwork *w = NULL;
	uint8_t status;
	uint32_t n;
	size_t ops = 0;

	for (struct bwork *x = bq.in_flight; x != NULL; x = x->next)
		if (x->id == m->reqid && !x->committing && !x->feedback)
			w = x;
	if (ipc_get_u8(m, &status) == -1 || status > BOUNCE_RETRY ||
	    ipc_get_u32(m, &n) == -1 || n > QUEUE_RCPT_MAX) {
		ipc_conn_protocol_error(bq.conn->ipc, "malformed BOUNCE_DONE");
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t rcpt;
		uint8_t dsn;

		if (ipc_get_u32(m, &rcpt) == -1 || ipc_get_u8(m, &dsn) == -1 ||
		    (dsn & ~QUEUE_RF_DSN_MASK) != 0) {
			ipc_conn_protocol_error(bq.conn->ipc,
			    "malformed BOUNCE_DONE");
			return;
		}
		if (w == NULL || dsn == 0)
			continue;
		queue_update_dsn_done(store_group(), w->qid, rcpt, dsn);
		ops++;
	}
	if (ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(bq.conn->ipc, "malformed BOUNCE_DONE");
		return;
	}
	bq.credits++;
	if (w == NULL) {
		log_warn("BOUNCE_DONE for an unknown work %u", m->reqid);
		bounce_dispatch();
		return;
	}
	if (status == BOUNCE_RETRY)
		retry_later(w->qid, false);
	if (ops > 0) {
		/* Out of the in-flight list only after the commit. */
		w->committing = true;
		store_track(w->qid, done_committed, w);
		store_kick();
	} else {
		take_work(w->id);
		free(w);
	}
	bounce_dispatch();
}

/*
 * Reads a BOUNCE_FEEDBACK_DONE; with apply, adds its events and
 * suppressions to the writer's group. Called first without apply, so a
 * malformed frame changes nothing. -1 when malformed.
 */
static int
feedback_read(struct ipc_msg *m, bool apply, uint8_t *outcome,
    const char **summary, uint32_t **idx, uint32_t *k)
{
	int64_t now = queue_now_ms();
	uint32_t n, n_supp;

	*idx = NULL;
	if (ipc_get_u8(m, outcome) == -1 || *outcome > FEEDBACK_RETRY ||
	    ipc_get_str(m, summary) == -1 || ipc_get_u32(m, k) == -1 ||
	    *k > QUEUE_RCPT_MAX)
		return -1;
	*idx = xcalloc(*k ? *k : 1, sizeof(**idx));
	for (uint32_t i = 0; i < *k; i++)
		if (ipc_get_u32(m, &(*idx)[i]) == -1)
			return -1;
	if (ipc_get_u32(m, &n) == -1 || n > 10000)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		struct queue_event e;
		uint8_t type;

		memset(&e, 0, sizeof(e));
		if (ipc_get_u8(m, &type) == -1 || ipc_get_u64(m, &e.qid) == -1 ||
		    ipc_get_u32(m, &e.rcpt_index) == -1 ||
		    ipc_get_str(m, &e.recipient) == -1 ||
		    ipc_get_u16(m, &e.code) == -1 ||
		    ipc_get_str(m, &e.status) == -1 ||
		    ipc_get_str(m, &e.text) == -1 ||
		    ipc_get_str(m, &e.bounce_class) == -1 ||
		    queue_event_type_name(type) == NULL)
			return -1;
		e.type = type;
		e.time_ms = now;
		e.remote_host = "";
		if (apply)
			queue_update_event(store_group(), &e);
	}
	if (ipc_get_u32(m, &n_supp) == -1 || n_supp > 10000)
		return -1;
	for (uint32_t i = 0; i < n_supp; i++) {
		struct queue_suppression s;
		uint8_t kind;

		memset(&s, 0, sizeof(s));
		if (ipc_get_str(m, &s.address) == -1 ||
		    ipc_get_u8(m, &kind) == -1 || kind > FEEDBACK_SOFT_FAILURE ||
		    ipc_get_u8(m, &s.source) == -1 ||
		    ipc_get_str(m, &s.reason) == -1 ||
		    ipc_get_i64(m, &s.expires_ms) == -1 ||
		    ipc_get_u64(m, &s.qid) == -1 ||
		    queue_supp_source_name(s.source) == NULL ||
		    s.address[0] == '\0' || strlen(s.address) > QUEUE_ADDRESS_MAX ||
		    strlen(s.reason) > QUEUE_FIELD_MAX)
			return -1;
		s.created_ms = now;
		if (!apply)
			continue;
		if (kind == FEEDBACK_SOFT_FAILURE) {
			struct queue_soft_failure f;

			memset(&f, 0, sizeof(f));
			f.address = s.address;
			f.qid = s.qid;
			f.limit = qmgr.supp_policy.soft_limit;
			f.window_ms = qmgr.supp_policy.soft_window_ms;
			f.expires_ms = s.expires_ms;
			f.reason = s.reason;
			queue_update_soft_failure(store_group(), &f);
		} else {
			queue_update_suppress_add(store_group(), &s);
		}
	}
	return ipc_msg_end(m);
}

/* Applies what tern-bounce made of an inbound message. */
static void
feedback_done(struct ipc_msg *m)
{
	struct ipc_msg probe = *m;
	struct queue_update *u;
	struct bwork *w = NULL;
	const char *summary;
	uint8_t outcome;
	uint32_t k;
	uint32_t *idx = NULL;
	char id[QUEUE_ID_LEN + 1];
	int64_t now = queue_now_ms();

	for (struct bwork *x = bq.in_flight; x != NULL; x = x->next)
		if (x->id == m->reqid && !x->committing && x->feedback)
			w = x;
	if (feedback_read(&probe, false, &outcome, &summary, &idx, &k) == -1) {
		free(idx);
		ipc_conn_protocol_error(bq.conn->ipc,
		    "malformed BOUNCE_FEEDBACK_DONE");
		return;
	}
	free(idx);
	bq.credits++;
	if (w == NULL) {
		log_warn("BOUNCE_FEEDBACK_DONE for an unknown work %u", m->reqid);
		bounce_dispatch();
		return;
	}
	feedback_read(m, outcome == FEEDBACK_PARSED, &outcome, &summary, &idx,
	    &k);
	u = store_group();
	queue_id_format(w->qid, id);
	for (uint32_t i = 0; i < k; i++) {
		struct queue_result r;

		switch (outcome) {
		case FEEDBACK_PARSED:
			/* Consumed by tern-bounce: the inbound message goes. */
			memset(&r, 0, sizeof(r));
			r.qid = w->qid;
			r.rcpt = idx[i];
			r.state = QUEUE_RCPT_DELIVERED;
			r.time_ms = now;
			r.code = 250;
			r.status = "2.0.0";
			r.text = summary;
			r.remote_host = "tern-bounce";
			r.bounce_class = "";
			queue_update_result(u, &r);
			break;
		case FEEDBACK_KEEP:
			queue_update_unclaim(u, w->qid, idx[i], now);
			break;
		default:
			queue_update_unclaim(u, w->qid, idx[i],
			    now + RETRY_SEC * 1000);
			break;
		}
		store_track(w->qid, NULL, NULL);
	}
	if (outcome == FEEDBACK_KEEP) {
		/* Kept for the operator: held, shown by ternctl queue. */
		queue_update_hold(u, w->qid);
		log_warn("%s: unrecognized feedback kept for the operator (held): "
		    "%s", id, summary);
	} else if (outcome == FEEDBACK_PARSED) {
		log_info("%s: feedback: %s", id, summary);
	}
	free(idx);
	if (queue_update_count(u) == 0) {
		take_work(w->id);
		free(w);
		bounce_dispatch();
		return;
	}
	w->committing = true;
	store_track(w->qid, done_committed, w);
	store_kick();
	bounce_dispatch();
}

void
bounce_attach(struct conn *c)
{
	pid_t pid = 0;
	uid_t uid;
	gid_t gid;

	if (bq.conn != NULL) {
		ipc_conn_protocol_error(c->ipc, "tern-bounce is already connected");
		return;
	}
	bq.conn = c;
	bq.credits = 0;
	ipc_conn_peer_cred(c->ipc, &pid, &uid, &gid);
	log_info("bounce %s pid %ld connected", ipc_conn_peer_name(c->ipc),
	    (long)pid);
}

void
bounce_on_msg(struct conn *c, struct ipc_msg *m)
{
	uint32_t credits;

	if (c != bq.conn)
		return;
	switch (m->type) {
	case IPC_BOUNCE_READY:
		if (ipc_get_u32(m, &credits) == -1 || ipc_msg_end(m) == -1 ||
		    credits > 10000) {
			ipc_conn_protocol_error(c->ipc, "malformed BOUNCE_READY");
			return;
		}
		bq.credits += credits;
		bounce_dispatch();
		break;
	case IPC_BOUNCE_DONE:
		bounce_done(m);
		break;
	case IPC_BOUNCE_FEEDBACK_DONE:
		feedback_done(m);
		break;
	default:
		ipc_conn_protocol_error(c->ipc, "unexpected %s from bounce",
		    ipc_type_name(m->type));
	}
}

/* bounce went away: what it had is handed out again to the next one. */
void
bounce_detach(struct conn *c)
{
	struct bwork **p;

	if (c != bq.conn)
		return;
	bq.conn = NULL;
	bq.credits = 0;
	p = &bq.in_flight;
	while (*p != NULL) {
		struct bwork *w = *p;

		/* A work whose answer waits for its commit stays listed
		 * until done_committed. */
		if (w->committing) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		if (!fifo_push(w->qid, w->feedback))
			retry_later(w->qid, w->feedback);
		free(w);
	}
	log_info("bounce disconnected");
}
