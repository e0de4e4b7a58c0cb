/*
 * quarantine.c - corrupt records are moved aside, never acted on and never
 * a reason to crash or loop: one record, a recipient (counted as failed),
 * or a whole message (SCHEMA.md, "quarantine"). Runs inside the write
 * transactions of the queue writers; readers only list it.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"

/* The next quarantine key: meta, but never at or below the last one. */
static int
qquarantine_seq(struct qtxn *t, uint64_t *seq)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t meta = 1, last = 0;
	int rc;

	if (!t->quar_seq_loaded) {
		rc = qget(t, QDB_META, "quarantine_seq", 14, &v);
		if (rc == 0 &&
		    qrec_decode_meta_u64(v.mv_data, v.mv_size, &meta) == -1)
			meta = 1;
		else if (qrc_is_fatal(rc))
			return rc;
		rc = mdb_cursor_open(t->txn, t->q->dbi[QDB_QUARANTINE], &c);
		if (rc != 0)
			return rc;
		rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
		if (rc == 0 && qkey_seq_decode(k.mv_data, k.mv_size, &last) == -1)
			last = 0;
		mdb_cursor_close(c);
		if (qrc_is_fatal(rc))
			return rc;
		t->quar_seq = meta > last ? meta : last + 1;
		t->quar_seq_loaded = true;
	}
	*seq = t->quar_seq++;
	return 0;
}

int
qquarantine_record(struct qtxn *t, enum qdb db, const void *key, size_t klen,
    const void *val, size_t vlen, const char *why)
{
	struct queue_quarantined r;
	uint8_t k[QKEY_SEQ_LEN];
	void *kcopy, *vcopy;
	uint64_t seq = 0;
	int rc;

	/* The key and value may point into the map: copy before writing. */
	kcopy = qarena_dup(&t->arena, key, klen);
	vcopy = qarena_dup(&t->arena, val, vlen);
	if ((rc = qquarantine_seq(t, &seq)) != 0)
		return rc;
	memset(&r, 0, sizeof(r));
	r.time_ms = queue_now_ms();
	r.db = qdb_names[db];
	r.key = kcopy;
	r.key_len = klen;
	r.why = why;
	r.value = vcopy;
	r.value_len = vlen;
	qkey_seq(k, seq);
	qbuf_reset(&t->buf);
	qrec_encode_quarantine(&t->buf, &r);
	if ((rc = qput(t, QDB_QUARANTINE, k, sizeof(k), t->buf.p, t->buf.len,
	    0)) != 0)
		return rc;
	if ((rc = qdel(t, db, kcopy, klen)) != 0)
		return rc;
	t->n_quarantined++;
	log_warn("queue: %s: %s (%zu-byte key, %zu-byte value) moved to "
	    "quarantine record %llu", qdb_names[db], why, klen, vlen,
	    (unsigned long long)seq);
	return 0;
}

/* Recomputes a message's counters from its recipient records; a missing
 * or unreadable recipient counts as failed. */
static int
qmsg_recount(struct qtxn *t, struct queue_msg_info *m)
{
	struct queue_rcpt_info r;
	uint32_t i;
	int rc;

	m->n_delivered = m->n_failed = m->n_dsn_pending = 0;
	for (i = 0; i < m->n_rcpt; i++) {
		rc = qload_rcpt(t, m->qid, i, &r, NULL);
		if (qrc_is_fatal(rc))
			return rc;
		if (rc != 0 || r.state == QUEUE_RCPT_FAILED)
			m->n_failed++;
		else if (r.state == QUEUE_RCPT_DELIVERED)
			m->n_delivered++;
		if (rc == 0 && (r.flags & QUEUE_RF_DSN_MASK))
			m->n_dsn_pending++;
	}
	return 0;
}

int
qquarantine_rcpt(struct qtxn *t, uint64_t qid, uint32_t index,
    const MDB_val *raw, const char *why)
{
	struct queue_msg_info m;
	uint8_t k[QKEY_RCPT_LEN];
	char id[QUEUE_ID_LEN + 1];
	int rc;

	qkey_rcpt(k, qid, index);
	if ((rc = qquarantine_record(t, QDB_RECIPIENTS, k, sizeof(k),
	    raw->mv_data, raw->mv_size, why)) != 0)
		return rc;
	if ((rc = qactive_del(t, qid, index)) != 0)
		return rc;
	/* Its schedule entry, if any, is stale now: dropped when due. */
	rc = qload_msg(t, qid, &m, NULL);
	if (rc == QRC_CORRUPT)
		return qquarantine_msg(t, qid, "corrupt message record");
	if (rc != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	/* Recount rather than guess what the lost record was. */
	if ((rc = qmsg_recount(t, &m)) != 0)
		return rc;
	log_warn("%s: recipient %u quarantined, counted as failed (no DSN: its "
	    "address is unreadable)", QID_STR(qid, id), index);
	if (queue_msg_is_finished(&m))
		return qremove_msg(t, &m);
	return qput_msg(t, &m);
}

/* Collects the keys of db that start with the 8-byte qid prefix. */
static int
qcollect_prefix(struct qtxn *t, enum qdb db, uint64_t qid, MDB_val **out,
    size_t *n)
{
	MDB_cursor *c;
	MDB_val k, v, *keys = NULL;
	uint8_t start[QKEY_RCPT_LEN];
	size_t cap = 0;
	int rc;

	*n = 0;
	qkey_rcpt(start, qid, 0);
	k.mv_size = sizeof(start);
	k.mv_data = start;
	if ((rc = mdb_cursor_open(t->txn, t->q->dbi[db], &c)) != 0)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 8 || qbe_get_u64(k.mv_data) != qid)
			break;
		if (*n == cap) {
			MDB_val *nk;

			cap = cap ? cap * 2 : 16;
			nk = qarena_alloc(&t->arena, cap * sizeof(*nk));
			if (*n > 0)
				memcpy(nk, keys, *n * sizeof(*nk));
			keys = nk;
		}
		keys[*n].mv_size = k.mv_size;
		keys[*n].mv_data = qarena_dup(&t->arena, k.mv_data, k.mv_size);
		(*n)++;
	}
	mdb_cursor_close(c);
	*out = keys;
	return qrc_is_fatal(rc) ? rc : 0;
}

int
qquarantine_msg(struct qtxn *t, uint64_t qid, const char *why)
{
	uint8_t mk[QKEY_MSG_LEN];
	MDB_val raw, *keys;
	struct queue_rcpt_info r;
	char id[QUEUE_ID_LEN + 1];
	size_t n, i;
	uint32_t index;
	uint64_t kqid;
	int rc;

	log_warn("%s: %s; the whole message goes to quarantine",
	    QID_STR(qid, id), why);
	qkey_msg(mk, qid);
	rc = qget(t, QDB_MESSAGES, mk, sizeof(mk), &raw);
	if (rc == 0)
		rc = qquarantine_record(t, QDB_MESSAGES, mk, sizeof(mk),
		    raw.mv_data, raw.mv_size, why);
	if (qrc_is_fatal(rc))
		return rc;
	if ((rc = qcollect_prefix(t, QDB_RECIPIENTS, qid, &keys, &n)) != 0)
		return rc;
	for (i = 0; i < n; i++) {
		rc = qget(t, QDB_RECIPIENTS, keys[i].mv_data, keys[i].mv_size,
		    &raw);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		if (qkey_rcpt_decode(keys[i].mv_data, keys[i].mv_size, &kqid,
		    &index) == 0 &&
		    qrec_decode_rcpt(raw.mv_data, raw.mv_size, kqid, index,
		    &r) == 0) {
			if (!(r.flags & QUEUE_RF_ACTIVE) &&
			    (rc = qsched_del(t, r.next_attempt_ms, qid,
			    index)) != 0)
				return rc;
			if ((rc = qevent_rcpt(t, QUEUE_EVENT_QUARANTINED,
			    queue_now_ms(), &r, why)) != 0)
				return rc;
		}
		if (keys[i].mv_size == QKEY_RCPT_LEN &&
		    (rc = qactive_del(t, qid, qbe_get_u32(
		    (uint8_t *)keys[i].mv_data + 8))) != 0)
			return rc;
		if ((rc = qquarantine_record(t, QDB_RECIPIENTS, keys[i].mv_data,
		    keys[i].mv_size, raw.mv_data, raw.mv_size, why)) != 0)
			return rc;
	}
	if ((rc = qcollect_prefix(t, QDB_CONTENT, qid, &keys, &n)) != 0)
		return rc;
	for (i = 0; i < n; i++) {
		rc = qget(t, QDB_CONTENT, keys[i].mv_data, keys[i].mv_size,
		    &raw);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		if ((rc = qquarantine_record(t, QDB_CONTENT, keys[i].mv_data,
		    keys[i].mv_size, raw.mv_data, raw.mv_size, why)) != 0)
			return rc;
	}
	return 0;
}

int
queue_quarantine_list(struct queue *q, queue_quarantine_cb cb, void *arg)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v;
	struct queue_quarantined r;
	uint64_t seq;
	int rc;

	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = mdb_cursor_open(t.txn, q->dbi[QDB_QUARANTINE], &c)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (qkey_seq_decode(k.mv_data, k.mv_size, &seq) == -1 ||
		    qrec_decode_quarantine(v.mv_data, v.mv_size, seq, &r) == -1) {
			log_warn("queue: unreadable quarantine record skipped");
			continue;
		}
		if (cb(arg, &r) != 0)
			break;
	}
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	if (qrc_is_fatal(rc))
		return qerr(qrc_to_err(q, rc));
	return 0;
}
