/*
 * store.c - the records of a message inside a transaction: load and
 * store messages and recipients, schedule and active entries, content
 * checks, removal of a finished message, and the names and predicates
 * of queue.h. Runs in every process that opens the queue.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"

const char *
queue_event_type_name(uint8_t type)
{
	static const char *const names[] = {
		[QUEUE_EVENT_QUEUED] = "queued",
		[QUEUE_EVENT_DEFERRED] = "deferred",
		[QUEUE_EVENT_DELIVERED] = "delivered",
		[QUEUE_EVENT_BOUNCED] = "bounced",
		[QUEUE_EVENT_EXPIRED] = "expired",
		[QUEUE_EVENT_SUPPRESSED] = "suppressed",
		[QUEUE_EVENT_COMPLAINT] = "complaint",
		[QUEUE_EVENT_OPEN] = "open",
		[QUEUE_EVENT_CLICK] = "click",
		[QUEUE_EVENT_HELD] = "held",
		[QUEUE_EVENT_RELEASED] = "released",
		[QUEUE_EVENT_DELETED] = "deleted",
		[QUEUE_EVENT_QUARANTINED] = "quarantined",
	};

	return type < sizeof(names) / sizeof(names[0]) ? names[type] : NULL;
}

const char *
queue_supp_source_name(uint8_t source)
{
	switch (source) {
	case QUEUE_SUPP_BOUNCE: return "bounce";
	case QUEUE_SUPP_COMPLAINT: return "complaint";
	case QUEUE_SUPP_MANUAL: return "manual";
	}
	return NULL;
}

bool
queue_msg_is_finished(const struct queue_msg_info *m)
{
	return m->n_delivered + m->n_failed >= m->n_rcpt &&
	    m->n_dsn_pending == 0;
}

bool
queue_dsn_wanted(const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, uint8_t kind)
{
	if (m->sender == NULL || m->sender[0] == '\0' ||
	    (r->notify & CLEANUP_NOTIFY_NEVER))
		return false;
	if (r->notify == 0)
		return kind == QUEUE_RF_DSN_FAILURE || kind == QUEUE_RF_DSN_DELAY;
	switch (kind) {
	case QUEUE_RF_DSN_FAILURE: return (r->notify & CLEANUP_NOTIFY_FAILURE) != 0;
	case QUEUE_RF_DSN_DELAY: return (r->notify & CLEANUP_NOTIFY_DELAY) != 0;
	case QUEUE_RF_DSN_SUCCESS: return (r->notify & CLEANUP_NOTIFY_SUCCESS) != 0;
	}
	return false;
}

bool
qrcpt_needs_work(const struct queue_rcpt_info *r)
{
	return r->state == QUEUE_RCPT_QUEUED || r->state == QUEUE_RCPT_DEFERRED ||
	    (r->flags & QUEUE_RF_DSN_MASK) != 0;
}

int
qload_msg(struct qtxn *t, uint64_t qid, struct queue_msg_info *m, MDB_val *raw)
{
	uint8_t k[QKEY_MSG_LEN];
	MDB_val v;
	char id[QUEUE_ID_LEN + 1];
	int rc;

	qkey_msg(k, qid);
	if ((rc = qget(t, QDB_MESSAGES, k, sizeof(k), &v)) != 0)
		return rc;
	if (raw != NULL)
		*raw = v;
	if (qrec_decode_msg(v.mv_data, v.mv_size, qid, m) == -1) {
		log_warn("%s: corrupt message record in the queue",
		    QID_STR(qid, id));
		return QRC_CORRUPT;
	}
	return 0;
}

int
qload_rcpt(struct qtxn *t, uint64_t qid, uint32_t index,
    struct queue_rcpt_info *r, MDB_val *raw)
{
	uint8_t k[QKEY_RCPT_LEN];
	MDB_val v;
	char id[QUEUE_ID_LEN + 1];
	int rc;

	qkey_rcpt(k, qid, index);
	if ((rc = qget(t, QDB_RECIPIENTS, k, sizeof(k), &v)) != 0)
		return rc;
	if (raw != NULL)
		*raw = v;
	if (qrec_decode_rcpt(v.mv_data, v.mv_size, qid, index, r) == -1) {
		log_warn("%s: corrupt record of recipient %u in the queue",
		    QID_STR(qid, id), index);
		return QRC_CORRUPT;
	}
	return 0;
}

int
qput_msg(struct qtxn *t, const struct queue_msg_info *m)
{
	uint8_t k[QKEY_MSG_LEN];

	qkey_msg(k, m->qid);
	qbuf_reset(&t->buf);
	qrec_encode_msg(&t->buf, m);
	return qput(t, QDB_MESSAGES, k, sizeof(k), t->buf.p, t->buf.len, 0);
}

int
qput_rcpt(struct qtxn *t, const struct queue_rcpt_info *r)
{
	uint8_t k[QKEY_RCPT_LEN];

	qkey_rcpt(k, r->qid, r->index);
	qbuf_reset(&t->buf);
	qrec_encode_rcpt(&t->buf, r);
	return qput(t, QDB_RECIPIENTS, k, sizeof(k), t->buf.p, t->buf.len, 0);
}

int
qsched_put(struct qtxn *t, int64_t due_ms, uint64_t qid, uint32_t index)
{
	uint8_t k[QKEY_SCHED_LEN], v = QREC_VERSION;

	qkey_sched(k, due_ms, qid, index);
	return qput(t, QDB_SCHEDULE, k, sizeof(k), &v, 1, 0);
}

int
qsched_del(struct qtxn *t, int64_t due_ms, uint64_t qid, uint32_t index)
{
	uint8_t k[QKEY_SCHED_LEN];

	qkey_sched(k, due_ms, qid, index);
	return qdel(t, QDB_SCHEDULE, k, sizeof(k));
}

int
qactive_put(struct qtxn *t, uint64_t qid, uint32_t index, int64_t now_ms)
{
	uint8_t k[QKEY_RCPT_LEN];

	qkey_rcpt(k, qid, index);
	qbuf_reset(&t->buf);
	qrec_encode_active(&t->buf, now_ms);
	return qput(t, QDB_ACTIVE, k, sizeof(k), t->buf.p, t->buf.len, 0);
}

int
qactive_del(struct qtxn *t, uint64_t qid, uint32_t index)
{
	uint8_t k[QKEY_RCPT_LEN];

	qkey_rcpt(k, qid, index);
	return qdel(t, QDB_ACTIVE, k, sizeof(k));
}

int
qcheck_content(struct qtxn *t, const struct queue_msg_info *m)
{
	uint8_t k[QKEY_RCPT_LEN];
	MDB_val key = { sizeof(k), k }, v;
	uint64_t total = 0;
	uint32_t i;
	int rc;

	/* Only sizes are read: the chunk bytes are not touched. */
	for (i = 0; i < m->n_chunks; i++) {
		qkey_rcpt(k, m->qid, i);
		rc = mdb_get(t->txn, t->q->dbi[QDB_CONTENT], &key, &v);
		if (rc == MDB_NOTFOUND)
			return QRC_CORRUPT;
		if (rc != 0)
			return rc;
		if (v.mv_size < 2 || v.mv_size > QUEUE_CHUNK_SIZE + 1 ||
		    (i + 1 < m->n_chunks && v.mv_size != QUEUE_CHUNK_SIZE + 1))
			return QRC_CORRUPT;
		total += v.mv_size - 1;
	}
	return total == m->size ? 0 : QRC_CORRUPT;
}

int
qremove_msg(struct qtxn *t, const struct queue_msg_info *m)
{
	uint8_t k[QKEY_RCPT_LEN];
	struct queue_rcpt_info r;
	uint32_t i;
	int rc;

	for (i = 0; i < m->n_rcpt; i++) {
		rc = qload_rcpt(t, m->qid, i, &r, NULL);
		if (rc == 0 && !(r.flags & QUEUE_RF_ACTIVE) && !m->hold &&
		    qrcpt_needs_work(&r) &&
		    (rc = qsched_del(t, r.next_attempt_ms, m->qid, i)) != 0)
			return rc;
		if (qrc_is_fatal(rc))
			return rc;
		if ((rc = qactive_del(t, m->qid, i)) != 0)
			return rc;
		qkey_rcpt(k, m->qid, i);
		if ((rc = qdel(t, QDB_RECIPIENTS, k, sizeof(k))) != 0)
			return rc;
	}
	for (i = 0; i < m->n_chunks; i++) {
		qkey_rcpt(k, m->qid, i);
		if ((rc = qdel(t, QDB_CONTENT, k, sizeof(k))) != 0)
			return rc;
	}
	qkey_msg(k, m->qid);
	return qdel(t, QDB_MESSAGES, k, QKEY_MSG_LEN);
}
