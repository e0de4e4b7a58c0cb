/*
 * read.c - read-only access: a message with its recipients, content
 * streamed in short read transactions, the listing for ternctl, and the
 * schedule. Corrupt records are logged and skipped (never written: a
 * reader may have no write access). Runs in every process that opens the
 * queue, including QUEUE_OPEN_READONLY ones.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"
#include "util.h"

struct loaded {
	struct queue_loaded_msg pub;	/* first: the public part */
	struct qarena arena;
};

int
queue_load(struct queue *q, uint64_t qid, struct queue_loaded_msg **out)
{
	struct qtxn t;
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	struct loaded *l;
	uint32_t i;
	int rc;

	*out = NULL;
	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = qload_msg(&t, qid, &m, NULL)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	l = xcalloc(1, sizeof(*l));
	qarena_init(&l->arena);
	qcopy_msg_info(&l->arena, &l->pub.info, &m);
	l->pub.rcpts = qarena_alloc(&l->arena, m.n_rcpt * sizeof(r));
	for (i = 0; i < m.n_rcpt; i++) {
		rc = qload_rcpt(&t, qid, i, &r, NULL);
		if (rc == 0)
			qcopy_rcpt_info(&l->arena, &l->pub.rcpts[l->pub.n_rcpts++],
			    &r);
		else if (qrc_is_fatal(rc))
			break;
		/* A missing (quarantined) or corrupt recipient is left out. */
		rc = 0;
	}
	qtxn_read_end(&t);
	if (rc != 0) {
		queue_loaded_free(&l->pub);
		return qerr(qrc_to_err(q, rc));
	}
	*out = &l->pub;
	return 0;
}

void
queue_loaded_free(struct queue_loaded_msg *m)
{
	struct loaded *l = (struct loaded *)m;

	if (m == NULL)
		return;
	qarena_free(&l->arena);
	free(l);
}

int
queue_content_read(struct queue *q, uint64_t qid, uint32_t first, uint32_t max,
    queue_chunk_cb cb, void *arg, uint32_t *n_read)
{
	struct qtxn t;
	struct queue_msg_info m;
	uint8_t k[QKEY_RCPT_LEN];
	MDB_val v;
	const void *data;
	size_t len, want;
	char id[QUEUE_ID_LEN + 1];
	uint32_t i;
	int rc;

	*n_read = 0;
	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = qload_msg(&t, qid, &m, NULL)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	for (i = first; i < m.n_chunks && i - first < max; i++) {
		qkey_rcpt(k, qid, i);
		rc = qget(&t, QDB_CONTENT, k, sizeof(k), &v);
		want = i + 1 < m.n_chunks ? QUEUE_CHUNK_SIZE :
		    (size_t)(m.size - (uint64_t)i * QUEUE_CHUNK_SIZE);
		if (rc == 0 && (qrec_decode_chunk(v.mv_data, v.mv_size, &data,
		    &len) == -1 || len != want))
			rc = QRC_CORRUPT;
		if (rc == MDB_NOTFOUND || rc == QRC_CORRUPT) {
			log_warn("%s: content chunk %u missing or corrupt",
			    QID_STR(qid, id), i);
			rc = QRC_CORRUPT;
		}
		if (rc != 0)
			break;
		(*n_read)++;
		if (cb(arg, i, data, len) != 0)
			break;
	}
	qtxn_read_end(&t);
	if (rc != 0)
		return qerr(qrc_to_err(q, rc));
	return 0;
}

int
queue_list(struct queue *q, queue_list_cb cb, void *arg)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v, rv;
	struct queue_msg_info m;
	struct queue_rcpt_info *rcpts = NULL;
	size_t cap = 0, n;
	uint8_t rk[QKEY_RCPT_LEN];
	char id[QUEUE_ID_LEN + 1];
	uint64_t qid;
	uint32_t i;
	int rc;

	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = mdb_cursor_open(t.txn, q->dbi[QDB_MESSAGES], &c)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (qkey_msg_decode(k.mv_data, k.mv_size, &qid) == -1 ||
		    qrec_decode_msg(v.mv_data, v.mv_size, qid, &m) == -1) {
			log_warn("queue: corrupt message record skipped in the "
			    "listing");
			continue;
		}
		if (m.n_rcpt > cap) {
			cap = m.n_rcpt;
			rcpts = xreallocarray(rcpts, cap, sizeof(*rcpts));
		}
		for (n = 0, i = 0; i < m.n_rcpt; i++) {
			qkey_rcpt(rk, qid, i);
			if (mdb_get(t.txn, q->dbi[QDB_RECIPIENTS],
			    &(MDB_val){ sizeof(rk), rk }, &rv) != 0)
				continue;
			if (qrec_decode_rcpt(rv.mv_data, rv.mv_size, qid, i,
			    &rcpts[n]) == -1) {
				log_warn("%s: corrupt record of recipient %u "
				    "skipped in the listing", QID_STR(qid, id),
				    i);
				continue;
			}
			n++;
		}
		if (cb(arg, &m, rcpts, n) != 0)
			break;
	}
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	free(rcpts);
	if (qrc_is_fatal(rc))
		return qerr(qrc_to_err(q, rc));
	return 0;
}

int
queue_schedule_scan(struct queue *q, int64_t until_ms, size_t max,
    queue_sched_cb cb, void *arg)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v;
	struct queue_sched_entry e;
	size_t n = 0;
	int rc;

	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = mdb_cursor_open(t.txn, q->dbi[QDB_SCHEDULE], &c)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < max;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (qkey_sched_decode(k.mv_data, k.mv_size, &e) == -1)
			continue;
		if (e.due_ms > until_ms)
			break;
		n++;
		if (cb(arg, &e) != 0)
			break;
	}
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	if (qrc_is_fatal(rc))
		return qerr(qrc_to_err(q, rc));
	return 0;
}

int
queue_schedule_earliest(struct queue *q, int64_t *due_ms)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v;
	struct queue_sched_entry e;
	int rc;

	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = mdb_cursor_open(t.txn, q->dbi[QDB_SCHEDULE], &c)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	/* A malformed key is skipped; the claim quarantines it. */
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if (qkey_sched_decode(k.mv_data, k.mv_size, &e) == 0)
			break;
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	if (rc != 0)
		return qerr(qrc_to_err(q, rc));
	*due_ms = e.due_ms;
	return 0;
}
