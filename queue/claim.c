/*
 * claim.c - the queue manager's view of due work: claim due recipients
 * (schedule → active, in one write transaction), put the active ones back
 * at start, and flush. Stale schedule entries are dropped and corrupt
 * records quarantined on the way, so a bad record is met once, never in
 * a loop. Runs in tern-qmgr; needs write access to the queue.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"
#include "util.h"

#define REQUEUE_PER_TXN	1000
#define FLUSH_PER_TXN	1000

struct claim_out {
	struct queue_claim pub;		/* first: the public part */
	struct qarena arena;
	size_t cap_msgs;
};

struct claim_arg {
	int64_t now_ms;
	size_t max;
	struct claim_out *out;
};

/* The claimed message qid in the output, or NULL. */
static struct queue_loaded_msg *
claim_find(struct claim_out *o, uint64_t qid)
{
	size_t i;

	/* Most recent first: one message's entries are usually adjacent. */
	for (i = o->pub.n_msgs; i > 0; i--)
		if (o->pub.msgs[i - 1].info.qid == qid)
			return &o->pub.msgs[i - 1];
	return NULL;
}

/* The claimed message for m in the output, added on first use. */
static struct queue_loaded_msg *
claim_msg(struct claim_out *o, const struct queue_msg_info *m)
{
	struct queue_loaded_msg *lm = claim_find(o, m->qid);

	if (lm != NULL)
		return lm;
	if (o->pub.n_msgs == o->cap_msgs) {
		o->cap_msgs = o->cap_msgs ? o->cap_msgs * 2 : 16;
		o->pub.msgs = xreallocarray(o->pub.msgs, o->cap_msgs,
		    sizeof(*o->pub.msgs));
	}
	lm = &o->pub.msgs[o->pub.n_msgs++];
	memset(lm, 0, sizeof(*lm));
	qcopy_msg_info(&o->arena, &lm->info, m);
	/* Room for every recipient of the message: never more are claimed. */
	lm->rcpts = qarena_alloc(&o->arena, m->n_rcpt * sizeof(*lm->rcpts));
	return lm;
}

static void
claim_reset(struct claim_out *o)
{
	qarena_free(&o->arena);
	free(o->pub.msgs);
	memset(o, 0, sizeof(*o));
	qarena_init(&o->arena);
}

/* Claims one schedule entry; fatal LMDB codes only, the rest is handled. */
static int
claim_entry(struct qtxn *t, struct claim_arg *a, const MDB_val *key)
{
	struct queue_sched_entry e;
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	struct queue_loaded_msg *lm;
	MDB_val raw, sv;
	int rc;

	if (qkey_sched_decode(key->mv_data, key->mv_size, &e) == -1 ||
	    qget(t, QDB_SCHEDULE, key->mv_data, key->mv_size, &sv) != 0 ||
	    qrec_decode_marker(sv.mv_data, sv.mv_size) == -1) {
		if ((rc = qget(t, QDB_SCHEDULE, key->mv_data, key->mv_size,
		    &sv)) != 0)
			return qrc_is_fatal(rc) ? rc : 0;
		return qquarantine_record(t, QDB_SCHEDULE, key->mv_data,
		    key->mv_size, sv.mv_data, sv.mv_size,
		    "corrupt schedule entry");
	}
	/* From here on the entry goes, whatever its fate. */
	if ((rc = qdel(t, QDB_SCHEDULE, key->mv_data, key->mv_size)) != 0)
		return rc;
	rc = qload_msg(t, e.qid, &m, NULL);
	/* The content is checked once per message and claim. */
	if (rc == 0 && claim_find(a->out, e.qid) == NULL &&
	    (rc = qcheck_content(t, &m)) == QRC_CORRUPT)
		return qquarantine_msg(t, e.qid, "content missing or corrupt");
	if (rc == QRC_CORRUPT)
		return qquarantine_msg(t, e.qid, "corrupt message record");
	if (rc == MDB_NOTFOUND || (rc == 0 && m.hold))
		return 0;	/* stale: message gone or held */
	if (rc != 0)
		return rc;
	rc = qload_rcpt(t, e.qid, e.rcpt, &r, &raw);
	if (rc == QRC_CORRUPT)
		return qquarantine_rcpt(t, e.qid, e.rcpt, &raw,
		    "corrupt recipient record");
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if ((r.flags & QUEUE_RF_ACTIVE) || !qrcpt_needs_work(&r))
		return 0;	/* stale: already claimed, or done */
	/* A record scheduled at another time has that entry too: drop it. */
	if (r.next_attempt_ms != e.due_ms &&
	    (rc = qsched_del(t, r.next_attempt_ms, e.qid, e.rcpt)) != 0)
		return rc;
	r.flags |= QUEUE_RF_ACTIVE;
	if ((rc = qput_rcpt(t, &r)) != 0 ||
	    (rc = qactive_put(t, e.qid, e.rcpt, a->now_ms)) != 0)
		return rc;
	lm = claim_msg(a->out, &m);
	if (lm->n_rcpts < m.n_rcpt) {
		qcopy_rcpt_info(&a->out->arena, &lm->rcpts[lm->n_rcpts++], &r);
		a->out->pub.n_rcpts++;
	}
	return 0;
}

static int
claim_txn(struct qtxn *t, void *varg)
{
	struct claim_arg *a = varg;
	MDB_cursor *c;
	MDB_val k, v, *keys;
	struct queue_sched_entry e;
	size_t n = 0, i, limit;
	int rc;

	claim_reset(a->out);
	/* Stale entries do not count: look a little further than max. */
	limit = a->max * 2 + 64;
	keys = qarena_alloc(&t->arena, limit * sizeof(*keys));
	if ((rc = mdb_cursor_open(t->txn, t->q->dbi[QDB_SCHEDULE], &c)) != 0)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < limit;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (qkey_sched_decode(k.mv_data, k.mv_size, &e) == 0 &&
		    e.due_ms > a->now_ms)
			break;
		keys[n].mv_size = k.mv_size;
		keys[n].mv_data = qarena_dup(&t->arena, k.mv_data, k.mv_size);
		n++;
	}
	mdb_cursor_close(c);
	if (qrc_is_fatal(rc))
		return rc;
	for (i = 0; i < n && a->out->pub.n_rcpts < a->max; i++)
		if ((rc = claim_entry(t, a, &keys[i])) != 0)
			return rc;
	return 0;
}

struct claim_arg *
qclaim_arg_new(int64_t now_ms, size_t max)
{
	struct claim_arg *a = xcalloc(1, sizeof(*a));

	a->now_ms = now_ms;
	a->max = max;
	a->out = xcalloc(1, sizeof(*a->out));
	qarena_init(&a->out->arena);
	return a;
}

int
qclaim_txn(struct qtxn *t, void *arg)
{
	return claim_txn(t, arg);
}

struct queue_claim *
qclaim_arg_finish(struct claim_arg *a, bool ok)
{
	struct queue_claim *c = &a->out->pub;

	if (!ok) {
		queue_claim_free(c);
		c = NULL;
	}
	free(a);
	return c;
}

int
queue_claim_due(struct queue *q, int64_t now_ms, size_t max,
    struct queue_claim **out)
{
	struct claim_out *o = xcalloc(1, sizeof(*o));
	struct claim_arg a = { .now_ms = now_ms, .max = max, .out = o };

	qarena_init(&o->arena);
	*out = &o->pub;
	if (max == 0)
		return 0;
	if (qtxn_write(q, claim_txn, &a) == -1) {
		queue_claim_free(&o->pub);
		*out = NULL;
		return -1;
	}
	return 0;
}

void
queue_claim_free(struct queue_claim *c)
{
	struct claim_out *o = (struct claim_out *)c;

	if (c == NULL)
		return;
	qarena_free(&o->arena);
	free(o->pub.msgs);
	free(o);
}

/* ---- requeue at start ---- */

struct requeue_arg {
	int64_t now_ms;
	size_t n;		/* requeued in this transaction */
	size_t seen;		/* active entries handled */
};

int
qrequeue_rcpt(struct qtxn *t, uint64_t qid, uint32_t index, int64_t due_ms,
    bool *requeued)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	MDB_val raw;
	int rc;

	*requeued = false;
	if ((rc = qactive_del(t, qid, index)) != 0)
		return rc;
	rc = qload_msg(t, qid, &m, NULL);
	if (rc == QRC_CORRUPT)
		return qquarantine_msg(t, qid, "corrupt message record");
	if (rc != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	rc = qload_rcpt(t, qid, index, &r, &raw);
	if (rc == QRC_CORRUPT)
		return qquarantine_rcpt(t, qid, index, &raw,
		    "corrupt recipient record");
	if (rc != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	r.flags &= (uint8_t)~QUEUE_RF_ACTIVE;
	if (qrcpt_needs_work(&r) && !m.hold) {
		r.next_attempt_ms = due_ms;
		if ((rc = qsched_put(t, due_ms, qid, index)) != 0)
			return rc;
		*requeued = true;
	}
	return qput_rcpt(t, &r);
}

static int
requeue_txn(struct qtxn *t, void *varg)
{
	struct requeue_arg *a = varg;
	MDB_cursor *c;
	MDB_val k, v, *keys;
	size_t n = 0, i;
	uint64_t qid;
	uint32_t index;
	bool requeued;
	int rc;

	a->n = a->seen = 0;
	keys = qarena_alloc(&t->arena, REQUEUE_PER_TXN * sizeof(*keys));
	if ((rc = mdb_cursor_open(t->txn, t->q->dbi[QDB_ACTIVE], &c)) != 0)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	    rc == 0 && n < REQUEUE_PER_TXN;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		keys[n].mv_size = k.mv_size;
		keys[n].mv_data = qarena_dup(&t->arena, k.mv_data, k.mv_size);
		n++;
	}
	mdb_cursor_close(c);
	if (qrc_is_fatal(rc))
		return rc;
	for (i = 0; i < n; i++) {
		a->seen++;
		if (qkey_rcpt_decode(keys[i].mv_data, keys[i].mv_size, &qid,
		    &index) == -1) {
			MDB_val raw;

			if ((rc = qget(t, QDB_ACTIVE, keys[i].mv_data,
			    keys[i].mv_size, &raw)) == 0)
				rc = qquarantine_record(t, QDB_ACTIVE,
				    keys[i].mv_data, keys[i].mv_size,
				    raw.mv_data, raw.mv_size,
				    "corrupt active entry");
			if (qrc_is_fatal(rc))
				return rc;
			continue;
		}
		if ((rc = qrequeue_rcpt(t, qid, index, a->now_ms,
		    &requeued)) != 0)
			return rc;
		if (requeued)
			a->n++;
	}
	return 0;
}

int
queue_requeue_active(struct queue *q, int64_t now_ms, size_t *n)
{
	struct requeue_arg a = { .now_ms = now_ms };
	size_t total = 0;
	int rounds;

	/* Each round empties up to REQUEUE_PER_TXN entries of the active
	 * db, so the loop ends; the bound is a safety net. */
	for (rounds = 0; rounds < 100000; rounds++) {
		if (qtxn_write(q, requeue_txn, &a) == -1) {
			if (n != NULL)
				*n = total;
			return -1;
		}
		total += a.n;
		if (a.seen < REQUEUE_PER_TXN)
			break;
	}
	if (total > 0)
		log_info("queue: %zu recipient(s) in flight at the last stop "
		    "are due again", total);
	if (n != NULL)
		*n = total;
	return 0;
}

/* ---- flush ---- */

struct flush_arg {
	uint64_t qid;		/* 0: all */
	int64_t now_ms;
	size_t n;
	bool more;
};

/* Re-keys one scheduled recipient to due now. */
static int
flush_rcpt(struct qtxn *t, struct flush_arg *a, uint64_t qid, uint32_t index,
    int64_t due_ms)
{
	struct queue_rcpt_info r;
	MDB_val raw;
	int rc;

	if ((rc = qsched_del(t, due_ms, qid, index)) != 0)
		return rc;
	rc = qload_rcpt(t, qid, index, &r, &raw);
	if (rc == QRC_CORRUPT)
		return qquarantine_rcpt(t, qid, index, &raw,
		    "corrupt recipient record");
	if (rc != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if ((r.flags & QUEUE_RF_ACTIVE) || !qrcpt_needs_work(&r))
		return 0;	/* the entry was stale */
	r.next_attempt_ms = a->now_ms;
	if ((rc = qsched_put(t, a->now_ms, qid, index)) != 0 ||
	    (rc = qput_rcpt(t, &r)) != 0)
		return rc;
	a->n++;
	return 0;
}

/* Flushes the entries due after now, in due order, FLUSH_PER_TXN at a
 * time; a flushed entry moves before the range, so rounds progress. */
static int
flush_all_txn(struct qtxn *t, void *varg)
{
	struct flush_arg *a = varg;
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t start[QKEY_SCHED_LEN];
	struct queue_sched_entry *es;
	size_t n = 0, i;
	int rc;

	a->n = 0;
	a->more = false;
	es = qarena_alloc(&t->arena, FLUSH_PER_TXN * sizeof(*es));
	qkey_sched(start, a->now_ms + 1, 0, 0);
	k.mv_size = sizeof(start);
	k.mv_data = start;
	if ((rc = mdb_cursor_open(t->txn, t->q->dbi[QDB_SCHEDULE], &c)) != 0)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (n == FLUSH_PER_TXN) {
			a->more = true;
			break;
		}
		/* Malformed keys are left for the claim to quarantine. */
		if (qkey_sched_decode(k.mv_data, k.mv_size, &es[n]) == 0)
			n++;
	}
	mdb_cursor_close(c);
	if (qrc_is_fatal(rc))
		return rc;
	for (i = 0; i < n; i++)
		if ((rc = flush_rcpt(t, a, es[i].qid, es[i].rcpt,
		    es[i].due_ms)) != 0)
			return rc;
	return 0;
}

static int
flush_msg_txn(struct qtxn *t, void *varg)
{
	struct flush_arg *a = varg;
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	uint32_t i;
	int rc;

	a->n = 0;
	a->more = false;
	rc = qload_msg(t, a->qid, &m, NULL);
	if (rc == QRC_CORRUPT)
		return qquarantine_msg(t, a->qid, "corrupt message record");
	if (rc != 0)
		return qrc_is_fatal(rc) ? rc : 0;
	if (m.hold)
		return 0;
	for (i = 0; i < m.n_rcpt; i++) {
		rc = qload_rcpt(t, a->qid, i, &r, NULL);
		if (qrc_is_fatal(rc))
			return rc;
		if (rc != 0 || (r.flags & QUEUE_RF_ACTIVE) ||
		    !qrcpt_needs_work(&r) || r.next_attempt_ms <= a->now_ms)
			continue;
		if ((rc = flush_rcpt(t, a, a->qid, i, r.next_attempt_ms)) != 0)
			return rc;
	}
	return 0;
}

int
queue_flush(struct queue *q, uint64_t qid, int64_t now_ms, size_t *n)
{
	struct flush_arg a = { .qid = qid, .now_ms = now_ms };
	size_t total = 0;
	int rounds;

	for (rounds = 0; rounds < 100000; rounds++) {
		if (qtxn_write(q, qid != 0 ? flush_msg_txn : flush_all_txn,
		    &a) == -1) {
			if (n != NULL)
				*n = total;
			return -1;
		}
		total += a.n;
		if (!a.more)
			break;
	}
	if (n != NULL)
		*n = total;
	return 0;
}
