/*
 * update.c - the queue manager's changes: delivery results, DSNs queued,
 * unclaim, hold, release, delete, suppression and free events, several in
 * one write transaction with one synced commit. Each state change appends
 * its event in that transaction, and a message that a change finishes is
 * removed in it too. Runs in tern-qmgr; needs write access to the queue.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"
#include "util.h"

enum op_kind {
	OP_RESULT,
	OP_DSN_DONE,
	OP_UNCLAIM,
	OP_HOLD,
	OP_RELEASE,
	OP_DELETE,
	OP_SUPP_ADD,
	OP_SUPP_REMOVE,
	OP_SOFT_FAILURE,
	OP_EVENT,
};

struct op {
	enum op_kind kind;
	enum queue_err status;
	bool removed;
	bool suppressed;		/* OP_SOFT_FAILURE reached the limit */
	uint64_t qid;
	uint32_t rcpt;
	int64_t due_ms;
	uint8_t dsn;
	struct queue_result res;	/* strings owned */
	struct queue_suppression supp;	/* strings owned */
	struct queue_event ev;		/* strings owned */
	struct queue_soft_failure soft;	/* strings owned */
};

struct queue_update {
	int64_t now_ms;
	struct op *ops;
	size_t n;
	size_t cap;
	enum queue_err soft_dropped;	/* QUEUE_OK, or why the soft-failure
					 * ops were left out of the commit */
};

static char *
dup_cut(const char *s, size_t max)
{
	return xstrndup(s ? s : "", max);
}

struct queue_update *
queue_update_new(int64_t now_ms)
{
	struct queue_update *u = xcalloc(1, sizeof(*u));

	u->now_ms = now_ms;
	return u;
}

static struct op *
op_add(struct queue_update *u, enum op_kind kind, uint64_t qid, uint32_t rcpt)
{
	struct op *o;

	if (u->n == u->cap) {
		u->cap = u->cap ? u->cap * 2 : 16;
		u->ops = xreallocarray(u->ops, u->cap, sizeof(*u->ops));
	}
	o = &u->ops[u->n++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->qid = qid;
	o->rcpt = rcpt;
	o->status = QUEUE_ERR_IO;
	return o;
}

void
queue_update_result(struct queue_update *u, const struct queue_result *r)
{
	struct op *o = op_add(u, OP_RESULT, r->qid, r->rcpt);

	o->res = *r;
	o->res.status = dup_cut(r->status, 32);
	o->res.text = dup_cut(r->text, QUEUE_TEXT_MAX);
	o->res.remote_host = dup_cut(r->remote_host, QUEUE_FIELD_MAX);
	o->res.bounce_class = dup_cut(r->bounce_class, 64);
}

void
queue_update_dsn_done(struct queue_update *u, uint64_t qid, uint32_t rcpt,
    uint8_t dsn)
{
	op_add(u, OP_DSN_DONE, qid, rcpt)->dsn = dsn;
}

void
queue_update_unclaim(struct queue_update *u, uint64_t qid, uint32_t rcpt,
    int64_t due_ms)
{
	op_add(u, OP_UNCLAIM, qid, rcpt)->due_ms = due_ms;
}

void
queue_update_hold(struct queue_update *u, uint64_t qid)
{
	op_add(u, OP_HOLD, qid, 0);
}

void
queue_update_release(struct queue_update *u, uint64_t qid)
{
	op_add(u, OP_RELEASE, qid, 0);
}

void
queue_update_delete(struct queue_update *u, uint64_t qid)
{
	op_add(u, OP_DELETE, qid, 0);
}

void
queue_update_suppress_add(struct queue_update *u,
    const struct queue_suppression *s)
{
	struct op *o = op_add(u, OP_SUPP_ADD, s->qid, 0);

	o->supp = *s;
	/* An over-long address is kept whole: the op then fails INVALID. */
	o->supp.address = xstrdup(s->address ? s->address : "");
	o->supp.reason = dup_cut(s->reason, QUEUE_FIELD_MAX);
}

void
queue_update_suppress_remove(struct queue_update *u, const char *address)
{
	struct op *o = op_add(u, OP_SUPP_REMOVE, 0, 0);

	o->supp.address = xstrdup(address ? address : "");
}

void
queue_update_soft_failure(struct queue_update *u,
    const struct queue_soft_failure *f)
{
	struct op *o = op_add(u, OP_SOFT_FAILURE, f->qid, 0);

	o->soft = *f;
	o->soft.address = xstrdup(f->address ? f->address : "");
	o->soft.reason = dup_cut(f->reason, QUEUE_FIELD_MAX);
}

void
queue_update_event(struct queue_update *u, const struct queue_event *e)
{
	struct op *o = op_add(u, OP_EVENT, e->qid, e->rcpt_index);

	o->ev = *e;
	o->ev.recipient = dup_cut(e->recipient, QUEUE_ADDRESS_MAX);
	o->ev.status = dup_cut(e->status, 32);
	o->ev.text = dup_cut(e->text, QUEUE_TEXT_MAX);
	o->ev.remote_host = dup_cut(e->remote_host, QUEUE_FIELD_MAX);
	o->ev.bounce_class = dup_cut(e->bounce_class, 64);
}

size_t
queue_update_count(const struct queue_update *u)
{
	return u->n;
}

enum queue_err
queue_update_status(const struct queue_update *u, size_t i)
{
	return i < u->n ? u->ops[i].status : QUEUE_ERR_INVALID;
}

bool
queue_update_removed(const struct queue_update *u, size_t i)
{
	return i < u->n && u->ops[i].status == QUEUE_OK && u->ops[i].removed;
}

void
queue_update_free(struct queue_update *u)
{
	size_t i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++) {
		struct op *o = &u->ops[i];

		free((char *)o->res.status);
		free((char *)o->res.text);
		free((char *)o->res.remote_host);
		free((char *)o->res.bounce_class);
		free((char *)o->supp.address);
		free((char *)o->supp.reason);
		free((char *)o->ev.recipient);
		free((char *)o->ev.status);
		free((char *)o->ev.text);
		free((char *)o->ev.remote_host);
		free((char *)o->ev.bounce_class);
		free((char *)o->soft.address);
		free((char *)o->soft.reason);
	}
	free(u->ops);
	free(u);
}

/* ---- applying ---- */

/* Loads the message and recipient an op names; corrupt ones are
 * quarantined. 0, MDB_NOTFOUND, QRC_CORRUPT or a fatal code. */
static int
op_load(struct qtxn *t, struct op *o, struct queue_msg_info *m,
    struct queue_rcpt_info *r)
{
	MDB_val raw;
	int rc;

	rc = qload_msg(t, o->qid, m, NULL);
	if (rc == QRC_CORRUPT) {
		rc = qquarantine_msg(t, o->qid, "corrupt message record");
		return rc != 0 ? rc : QRC_CORRUPT;
	}
	if (rc != 0 || r == NULL)
		return rc;
	if (o->rcpt >= m->n_rcpt)
		return MDB_NOTFOUND;
	rc = qload_rcpt(t, o->qid, o->rcpt, r, &raw);
	if (rc == QRC_CORRUPT) {
		rc = qquarantine_rcpt(t, o->qid, o->rcpt, &raw,
		    "corrupt recipient record");
		return rc != 0 ? rc : QRC_CORRUPT;
	}
	return rc;
}

/* Stores the message, or removes it when the change finished it. */
static int
op_store_msg(struct qtxn *t, struct op *o, const struct queue_msg_info *m)
{
	if (queue_msg_is_finished(m)) {
		o->removed = true;
		return qremove_msg(t, m);
	}
	return qput_msg(t, m);
}

/* Sets DSN flags and keeps the message's count of recipients with one. */
static void
rcpt_set_dsn(struct queue_msg_info *m, struct queue_rcpt_info *r,
    uint8_t flags, bool set)
{
	bool had = (r->flags & QUEUE_RF_DSN_MASK) != 0, has;

	if (set)
		r->flags |= flags;
	else
		r->flags &= (uint8_t)~flags;
	has = (r->flags & QUEUE_RF_DSN_MASK) != 0;
	if (!had && has)
		m->n_dsn_pending++;
	else if (had && !has && m->n_dsn_pending > 0)
		m->n_dsn_pending--;
}

static int
apply_result(struct qtxn *t, struct op *o)
{
	const struct queue_result *res = &o->res;
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	struct queue_event e;
	int rc;

	if ((res->state != QUEUE_RCPT_DELIVERED &&
	    res->state != QUEUE_RCPT_DEFERRED &&
	    res->state != QUEUE_RCPT_FAILED) ||
	    (res->dsn & ~QUEUE_RF_DSN_MASK) != 0 ||
	    (res->event != 0 && queue_event_type_name(res->event) == NULL))
		return QRC_INVALID;
	if ((rc = op_load(t, o, &m, &r)) != 0)
		return rc;
	if (!(r.flags & QUEUE_RF_ACTIVE) || !(r.state == QUEUE_RCPT_QUEUED ||
	    r.state == QUEUE_RCPT_DEFERRED))
		return QRC_STATE;
	if (res->attempted) {
		r.attempts++;
		if (r.first_attempt_ms == 0)
			r.first_attempt_ms = res->time_ms;
		r.last_attempt_ms = res->time_ms;
	}
	r.last_code = res->code;
	r.last_status = res->status;
	r.last_text = res->text;
	r.last_host = res->remote_host;
	if (res->bounce_class[0] != '\0' || res->state == QUEUE_RCPT_FAILED)
		r.bounce_class = res->bounce_class;
	r.state = res->state;
	if (res->dsn & QUEUE_RF_DSN_DELAY)
		r.flags |= QUEUE_RF_DELAY_WARNED;
	rcpt_set_dsn(&m, &r, res->dsn, true);
	if (res->state == QUEUE_RCPT_DEFERRED) {
		r.next_attempt_ms = res->next_attempt_ms;
		r.flags &= (uint8_t)~QUEUE_RF_ACTIVE;
		if ((rc = qactive_del(t, o->qid, o->rcpt)) != 0)
			return rc;
		if (!m.hold && (rc = qsched_put(t, r.next_attempt_ms, o->qid,
		    o->rcpt)) != 0)
			return rc;
	} else {
		if (res->state == QUEUE_RCPT_DELIVERED)
			m.n_delivered++;
		else
			m.n_failed++;
		r.next_attempt_ms = 0;
		/* With a DSN to queue it stays claimed until dsn_done. */
		if (!(r.flags & QUEUE_RF_DSN_MASK)) {
			r.flags &= (uint8_t)~QUEUE_RF_ACTIVE;
			if ((rc = qactive_del(t, o->qid, o->rcpt)) != 0)
				return rc;
		}
	}
	memset(&e, 0, sizeof(e));
	e.time_ms = res->time_ms ? res->time_ms : o->due_ms;
	e.type = res->event ? res->event :
	    res->state == QUEUE_RCPT_DELIVERED ? QUEUE_EVENT_DELIVERED :
	    res->state == QUEUE_RCPT_DEFERRED ? QUEUE_EVENT_DEFERRED :
	    QUEUE_EVENT_BOUNCED;
	e.qid = o->qid;
	e.rcpt_index = o->rcpt;
	e.recipient = r.address;
	e.code = res->code;
	e.status = res->status;
	e.text = res->text;
	e.remote_host = res->remote_host;
	e.attempt = r.attempts;
	e.bounce_class = r.bounce_class;
	if ((rc = qevent_append(t, &e)) != 0 || (rc = qput_rcpt(t, &r)) != 0)
		return rc;
	return op_store_msg(t, o, &m);
}

static int
apply_dsn_done(struct qtxn *t, struct op *o)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	int rc;

	if ((o->dsn & ~QUEUE_RF_DSN_MASK) != 0)
		return QRC_INVALID;
	if ((rc = op_load(t, o, &m, &r)) != 0)
		return rc;
	rcpt_set_dsn(&m, &r, o->dsn, false);
	if (!qrcpt_needs_work(&r)) {
		if (r.flags & QUEUE_RF_ACTIVE) {
			r.flags &= (uint8_t)~QUEUE_RF_ACTIVE;
			rc = qactive_del(t, o->qid, o->rcpt);
		} else if (!m.hold) {
			/* Final and waiting in the schedule for its DSN
			 * (after a restart): nothing left to wait for. */
			rc = qsched_del(t, r.next_attempt_ms, o->qid, o->rcpt);
		}
		if (rc != 0)
			return rc;
	}
	if ((rc = qput_rcpt(t, &r)) != 0)
		return rc;
	return op_store_msg(t, o, &m);
}

static int
apply_unclaim(struct qtxn *t, struct op *o)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	bool requeued;
	int rc;

	if ((rc = op_load(t, o, &m, &r)) != 0)
		return rc;
	if (!(r.flags & QUEUE_RF_ACTIVE))
		return QRC_STATE;
	return qrequeue_rcpt(t, o->qid, o->rcpt, o->due_ms, &requeued);
}

/* Hold (hold = true) or release a message. */
static int
apply_hold(struct qtxn *t, struct op *o, bool hold)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	uint32_t i;
	int rc;

	if ((rc = op_load(t, o, &m, NULL)) != 0)
		return rc;
	if (m.hold == hold)
		return 0;
	m.hold = hold;
	for (i = 0; i < m.n_rcpt; i++) {
		rc = qload_rcpt(t, o->qid, i, &r, NULL);
		if (qrc_is_fatal(rc))
			return rc;
		/* Missing or corrupt ones are left to the claim. */
		if (rc != 0)
			continue;
		if (!(r.flags & QUEUE_RF_ACTIVE) && qrcpt_needs_work(&r)) {
			if (hold) {
				rc = qsched_del(t, r.next_attempt_ms, o->qid, i);
			} else {
				r.next_attempt_ms = o->due_ms;
				if ((rc = qsched_put(t, r.next_attempt_ms,
				    o->qid, i)) == 0)
					rc = qput_rcpt(t, &r);
			}
			if (rc != 0)
				return rc;
		}
		if ((r.state == QUEUE_RCPT_QUEUED ||
		    r.state == QUEUE_RCPT_DEFERRED) &&
		    (rc = qevent_rcpt(t, hold ? QUEUE_EVENT_HELD :
		    QUEUE_EVENT_RELEASED, o->due_ms, &r, "")) != 0)
			return rc;
	}
	return qput_msg(t, &m);
}

static int
apply_delete(struct qtxn *t, struct op *o)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	uint32_t i;
	int rc;

	if ((rc = op_load(t, o, &m, NULL)) != 0)
		return rc;
	for (i = 0; i < m.n_rcpt; i++) {
		rc = qload_rcpt(t, o->qid, i, &r, NULL);
		if (qrc_is_fatal(rc))
			return rc;
		if (rc == 0 && (r.state == QUEUE_RCPT_QUEUED ||
		    r.state == QUEUE_RCPT_DEFERRED) &&
		    (rc = qevent_rcpt(t, QUEUE_EVENT_DELETED, o->due_ms, &r,
		    "deleted by the operator")) != 0)
			return rc;
	}
	o->removed = true;
	return qremove_msg(t, &m);
}

static int
apply_supp_add(struct qtxn *t, struct op *o)
{
	char key[QUEUE_ADDRESS_MAX + 1];
	struct queue_suppression s = o->supp;
	size_t klen;

	if (qaddr_key(s.address, key, &klen) == -1 ||
	    queue_supp_source_name(s.source) == NULL)
		return QRC_INVALID;
	if (s.created_ms == 0)
		s.created_ms = o->due_ms;
	qbuf_reset(&t->buf);
	qrec_encode_supp(&t->buf, &s);
	return qput(t, QDB_SUPPRESSION, key, klen, t->buf.p, t->buf.len, 0);
}

static int
apply_supp_remove(struct qtxn *t, struct op *o)
{
	char key[QUEUE_ADDRESS_MAX + 1];
	size_t klen;
	MDB_val k;
	int rc;

	if (qaddr_key(o->supp.address, key, &klen) == -1)
		return QRC_INVALID;
	k.mv_size = klen;
	k.mv_data = key;
	/* The soft bounces counted so far go too: a fresh start. */
	if ((rc = qsoftfail_forget(t, o->supp.address)) != 0)
		return rc;
	return mdb_del(t->txn, t->q->dbi[QDB_SUPPRESSION], &k, NULL);
}

static int
apply_soft_failure(struct qtxn *t, struct op *o)
{
	return qsoftfail_apply(t, &o->soft, o->due_ms, &o->suppressed);
}

static int
apply_event(struct qtxn *t, struct op *o)
{
	struct queue_event e = o->ev;

	if (queue_event_type_name(e.type) == NULL)
		return QRC_INVALID;
	if (e.time_ms == 0)
		e.time_ms = o->due_ms;
	return qevent_append(t, &e);
}

static int
update_txn(struct qtxn *t, void *arg)
{
	struct queue_update *u = arg;
	size_t i;
	int rc = 0;

	for (i = 0; i < u->n; i++) {
		struct op *o = &u->ops[i];

		o->removed = false;
		o->suppressed = false;
		if (o->kind == OP_SOFT_FAILURE && u->soft_dropped != QUEUE_OK) {
			o->status = u->soft_dropped;
			continue;
		}
		/* Operations without a time of their own use the update's. */
		if (o->kind != OP_UNCLAIM)
			o->due_ms = u->now_ms;
		switch (o->kind) {
		case OP_RESULT: rc = apply_result(t, o); break;
		case OP_DSN_DONE: rc = apply_dsn_done(t, o); break;
		case OP_UNCLAIM: rc = apply_unclaim(t, o); break;
		case OP_HOLD: rc = apply_hold(t, o, true); break;
		case OP_RELEASE: rc = apply_hold(t, o, false); break;
		case OP_DELETE: rc = apply_delete(t, o); break;
		case OP_SUPP_ADD: rc = apply_supp_add(t, o); break;
		case OP_SUPP_REMOVE: rc = apply_supp_remove(t, o); break;
		case OP_SOFT_FAILURE: rc = apply_soft_failure(t, o); break;
		case OP_EVENT: rc = apply_event(t, o); break;
		}
		if (qrc_is_fatal(rc))
			return rc;
		o->status = qrc_to_err(t->q, rc);
	}
	return 0;
}

static bool
has_soft_failure(const struct queue_update *u)
{
	for (size_t i = 0; i < u->n; i++)
		if (u->ops[i].kind == OP_SOFT_FAILURE)
			return true;
	return false;
}

/* The update, then the claim, in one transaction. */
struct update_claim {
	struct queue_update *u;
	struct claim_arg *claim;
};

static int
update_claim_txn(struct qtxn *t, void *arg)
{
	struct update_claim *uc = arg;
	int rc = update_txn(t, uc->u);

	return rc != 0 ? rc : qclaim_txn(t, uc->claim);
}

static void log_soft_failures(const struct queue_update *u);

int
queue_update_commit_claim(struct queue *q, struct queue_update *u,
    int64_t now_ms, size_t max, struct queue_claim **out)
{
	struct update_claim uc = { u, qclaim_arg_new(now_ms, max) };
	int rc;

	u->soft_dropped = QUEUE_OK;
	rc = qtxn_write(q, update_claim_txn, &uc);
	*out = qclaim_arg_finish(uc.claim, rc == 0);
	if (rc == 0)
		log_soft_failures(u);
	return rc;
}

int
queue_update_commit(struct queue *q, struct queue_update *u)
{
	enum queue_err e;
	size_t i;
	int rc;

	if (u->n == 0)
		return 0;
	u->soft_dropped = QUEUE_OK;
	rc = qtxn_write(q, update_txn, u);
	/*
	 * A full queue (map at map_size_max, disk full): a soft-bounce count
	 * is the one change that may be lost (it delays a suppression, never
	 * mails anyone by mistake); the results it came with may not. Try
	 * again without the counts: they need room of their own (a list of
	 * up to 16 KB each), which the results may not.
	 */
	if (rc == -1 && ((e = queue_last_error()) == QUEUE_ERR_FULL ||
	    e == QUEUE_ERR_NOSPACE) && has_soft_failure(u) &&
	    !queue_is_broken(q)) {
		u->soft_dropped = e;
		rc = qtxn_write(q, update_txn, u);
	}
	if (rc == -1) {
		e = queue_last_error();
		for (i = 0; i < u->n; i++) {
			u->ops[i].status = e;
			u->ops[i].removed = false;
			u->ops[i].suppressed = false;
		}
		return -1;
	}
	log_soft_failures(u);
	return 0;
}

static void
log_soft_failures(const struct queue_update *u)
{
	/* Only now is it so: a transaction tried again after the map grew
	 * applied its ops twice, and a failed one not at all. */
	for (size_t i = 0; i < u->n; i++) {
		const struct op *o = &u->ops[i];

		if (o->kind != OP_SOFT_FAILURE)
			continue;
		if (o->status == QUEUE_OK && o->suppressed)
			log_info("suppressed <%s>: %u different messages "
			    "soft-bounced within %lld s", o->soft.address,
			    o->soft.limit, (long long)(o->soft.window_ms / 1000));
		else if (u->soft_dropped != QUEUE_OK)
			log_warn("soft bounce of <%s> not counted: %s",
			    o->soft.address, queue_strerror(u->soft_dropped));
	}
}

/* ---- one-operation conveniences ---- */

/* Commits a one-op update and returns its status as 0/-1. */
static int
update_one(struct queue *q, struct queue_update *u)
{
	enum queue_err e;

	if (queue_update_commit(q, u) == -1) {
		queue_update_free(u);
		return -1;
	}
	e = queue_update_status(u, 0);
	queue_update_free(u);
	return e == QUEUE_OK ? 0 : qerr(e);
}

int
queue_suppress_add(struct queue *q, const struct queue_suppression *s)
{
	struct queue_update *u = queue_update_new(queue_now_ms());

	queue_update_suppress_add(u, s);
	return update_one(q, u);
}

int
queue_suppress_remove(struct queue *q, const char *address)
{
	struct queue_update *u = queue_update_new(queue_now_ms());

	queue_update_suppress_remove(u, address);
	return update_one(q, u);
}
