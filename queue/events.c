/*
 * events.c - the append-only event log: append (always inside the
 * transaction of the state change), read from a sequence number, the
 * events of one message through event_index, and purge by age.
 * Appends run in the queue writers; reads in any process.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"

#define PURGE_PER_TXN	10000

/* Loads the next sequence number: meta, but never at or below the last
 * event (a lost or corrupt meta value cannot make numbers repeat). */
static int
qevent_seq_load(struct qtxn *t)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t meta = 1, last = 0;
	int rc;

	if (t->event_seq_loaded)
		return 0;
	rc = qget(t, QDB_META, "event_seq", 9, &v);
	if (rc == 0 && qrec_decode_meta_u64(v.mv_data, v.mv_size, &meta) == -1) {
		log_warn("queue: corrupt meta event_seq; going on after the "
		    "last event");
		meta = 1;
	} else if (qrc_is_fatal(rc)) {
		return rc;
	}
	if ((rc = mdb_cursor_open(t->txn, t->q->dbi[QDB_EVENTS], &c)) != 0)
		return rc;
	rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
	if (rc == 0 && qkey_seq_decode(k.mv_data, k.mv_size, &last) == -1)
		last = 0;
	mdb_cursor_close(c);
	if (qrc_is_fatal(rc))
		return rc;
	t->event_seq = meta > last ? meta : last + 1;
	if (t->event_seq == 0)
		t->event_seq = 1;
	t->event_seq_loaded = true;
	return 0;
}

int
qevent_append(struct qtxn *t, struct queue_event *e)
{
	uint8_t k[QKEY_SEQ_LEN], ik[QKEY_EVIDX_LEN], marker = QREC_VERSION;
	int rc;

	if ((rc = qevent_seq_load(t)) != 0)
		return rc;
	e->seq = t->event_seq++;
	qkey_seq(k, e->seq);
	qbuf_reset(&t->buf);
	qrec_encode_event(&t->buf, e);
	if ((rc = qput(t, QDB_EVENTS, k, sizeof(k), t->buf.p, t->buf.len,
	    0)) != 0)
		return rc;
	if (e->qid == 0)
		return 0;
	qkey_evidx(ik, e->qid, e->seq);
	return qput(t, QDB_EVENT_INDEX, ik, sizeof(ik), &marker, 1, 0);
}

int
qevent_rcpt(struct qtxn *t, uint8_t type, int64_t time_ms,
    const struct queue_rcpt_info *r, const char *text)
{
	struct queue_event e;

	memset(&e, 0, sizeof(e));
	e.time_ms = time_ms;
	e.type = type;
	e.qid = r->qid;
	e.rcpt_index = r->index;
	e.recipient = r->address;
	e.text = text;
	e.attempt = r->attempts;
	return qevent_append(t, &e);
}

int
queue_events_read(struct queue *q, uint64_t from_seq, size_t max,
    queue_event_cb cb, void *arg, uint64_t *next_seq)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t key[QKEY_SEQ_LEN];
	struct queue_event e;
	uint64_t seq, next = from_seq;
	size_t n = 0;
	int rc;

	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = mdb_cursor_open(t.txn, q->dbi[QDB_EVENTS], &c)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	qkey_seq(key, from_seq);
	k.mv_size = sizeof(key);
	k.mv_data = key;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && n < max;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (qkey_seq_decode(k.mv_data, k.mv_size, &seq) == -1)
			continue;
		next = seq + 1;
		if (qrec_decode_event(v.mv_data, v.mv_size, seq, &e) == -1) {
			log_warn("queue: corrupt event %llu skipped",
			    (unsigned long long)seq);
			continue;
		}
		n++;
		if (cb(arg, &e) != 0) {
			rc = MDB_NOTFOUND;
			break;
		}
	}
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	if (next_seq != NULL)
		*next_seq = next;
	if (qrc_is_fatal(rc))
		return qerr(qrc_to_err(q, rc));
	return 0;
}

int
queue_events_for(struct queue *q, uint64_t qid, queue_event_cb cb, void *arg)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v, ek, ev;
	uint8_t key[QKEY_EVIDX_LEN], seqk[QKEY_SEQ_LEN];
	struct queue_event e;
	uint64_t kqid, seq;
	int rc;

	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = mdb_cursor_open(t.txn, q->dbi[QDB_EVENT_INDEX], &c)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	qkey_evidx(key, qid, 0);
	k.mv_size = sizeof(key);
	k.mv_data = key;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (qkey_evidx_decode(k.mv_data, k.mv_size, &kqid, &seq) == -1)
			continue;
		if (kqid != qid)
			break;
		qkey_seq(seqk, seq);
		ek.mv_size = sizeof(seqk);
		ek.mv_data = seqk;
		if (mdb_get(t.txn, q->dbi[QDB_EVENTS], &ek, &ev) != 0)
			continue;
		if (qrec_decode_event(ev.mv_data, ev.mv_size, seq, &e) == -1) {
			log_warn("queue: corrupt event %llu skipped",
			    (unsigned long long)seq);
			continue;
		}
		if (cb(arg, &e) != 0)
			break;
	}
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	if (qrc_is_fatal(rc))
		return qerr(qrc_to_err(q, rc));
	return 0;
}

struct purge_arg {
	int64_t before_ms;
	size_t n;		/* purged in this transaction */
	bool more;		/* the limit stopped it: go on */
};

/* Purges the oldest events, up to PURGE_PER_TXN, stopping at the first
 * event inside the retention. */
static int
purge_txn(struct qtxn *t, void *varg)
{
	struct purge_arg *a = varg;
	MDB_cursor *c;
	MDB_val k, v, *keys;
	struct queue_event e;
	uint64_t *qids;
	size_t n = 0, i;
	uint64_t seq;
	int rc;

	a->n = 0;
	a->more = false;
	keys = qarena_alloc(&t->arena, PURGE_PER_TXN * sizeof(*keys));
	qids = qarena_alloc(&t->arena, PURGE_PER_TXN * sizeof(*qids));
	if ((rc = mdb_cursor_open(t->txn, t->q->dbi[QDB_EVENTS], &c)) != 0)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (n == PURGE_PER_TXN) {
			a->more = true;
			break;
		}
		if (qkey_seq_decode(k.mv_data, k.mv_size, &seq) == 0 &&
		    qrec_decode_event(v.mv_data, v.mv_size, seq, &e) == 0) {
			if (e.time_ms >= a->before_ms)
				break;
			qids[n] = e.qid;
		} else {
			/* Corrupt: its age is unknown. It goes to the
			 * quarantine below rather than block the purge. */
			qids[n] = UINT64_MAX;
		}
		keys[n].mv_size = k.mv_size;
		keys[n].mv_data = qarena_dup(&t->arena, k.mv_data, k.mv_size);
		n++;
	}
	mdb_cursor_close(c);
	if (qrc_is_fatal(rc))
		return rc;
	for (i = 0; i < n; i++) {
		if (qids[i] == UINT64_MAX) {
			MDB_val raw;

			if ((rc = qget(t, QDB_EVENTS, keys[i].mv_data,
			    keys[i].mv_size, &raw)) == 0)
				rc = qquarantine_record(t, QDB_EVENTS,
				    keys[i].mv_data, keys[i].mv_size,
				    raw.mv_data, raw.mv_size, "corrupt event");
			if (qrc_is_fatal(rc))
				return rc;
			continue;
		}
		if ((rc = qdel(t, QDB_EVENTS, keys[i].mv_data,
		    keys[i].mv_size)) != 0)
			return rc;
		if (qids[i] != 0) {
			uint8_t ik[QKEY_EVIDX_LEN];

			qkey_evidx(ik, qids[i], qbe_get_u64(keys[i].mv_data));
			if ((rc = qdel(t, QDB_EVENT_INDEX, ik, sizeof(ik))) != 0)
				return rc;
		}
		a->n++;
	}
	return 0;
}

int
queue_events_purge(struct queue *q, int64_t before_ms, size_t *n)
{
	struct purge_arg a = { .before_ms = before_ms };
	size_t total = 0;
	int rounds;

	/* Bounded: each round removes up to PURGE_PER_TXN events. */
	for (rounds = 0; rounds < 100000; rounds++) {
		if (qtxn_write(q, purge_txn, &a) == -1) {
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
