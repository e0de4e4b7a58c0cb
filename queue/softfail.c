/*
 * softfail.c - soft bounces counted per address: the list of recent
 * failures (time, message) kept in the "softfail" database, merged by a
 * pure function, and the update operation that suppresses the address
 * once enough different messages soft-bounced within the window (see
 * SCHEMA.md). The operation runs in tern-qmgr's write transactions, so
 * the count and the suppression commit together with the result.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"
#include "util.h"

size_t
queue_softfail_note(struct queue_softfail *list, size_t *n, uint64_t qid,
    int64_t now_ms, int64_t window_ms)
{
	size_t kept = 0;

	/* Drop what left the window (or lies in the future: a clock that
	 * stepped back must not keep failures alive) and this message,
	 * which goes to the end with its new time: one message retried
	 * ten times is one failure, and the list stays in time order. */
	for (size_t i = 0; i < *n; i++) {
		if (list[i].time_ms < now_ms - window_ms ||
		    list[i].time_ms > now_ms || list[i].qid == qid)
			continue;
		list[kept++] = list[i];
	}
	/* Full: the oldest goes. */
	if (kept == QUEUE_SOFTFAIL_MAX) {
		memmove(list, list + 1, (kept - 1) * sizeof(*list));
		kept--;
	}
	list[kept].time_ms = now_ms;
	list[kept].qid = qid;
	*n = ++kept;
	return kept;
}

void
qrec_encode_softfail(struct qbuf *b, const struct queue_softfail *list,
    size_t n)
{
	qbuf_put_u8(b, QREC_VERSION);
	qbuf_put_u16(b, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		qbuf_put_i64(b, list[i].time_ms < 0 ? 0 : list[i].time_ms);
		qbuf_put_u64(b, list[i].qid);
	}
}

/* The header of a softfail record (version, count) checked against
 * the record's length: the count of entries, or -1 when malformed. */
static int
softfail_header(const uint8_t *b, size_t len, size_t *count)
{
	if (len < 3 || b[0] != QREC_VERSION)
		return -1;
	*count = (size_t)b[1] << 8 | b[2];
	if (*count > QUEUE_SOFTFAIL_MAX || len != 3 + *count * 16)
		return -1;
	return 0;
}

/* Entry i's time (ms) of a record whose header was checked. */
static int64_t
softfail_time(const uint8_t *b, size_t i)
{
	return (int64_t)qbe_get_u64(b + 3 + i * 16);
}

int
qrec_decode_softfail(const void *p, size_t len, struct queue_softfail *list,
    size_t *n)
{
	const uint8_t *b = p;
	size_t count;

	*n = 0;
	if (softfail_header(b, len, &count) == -1)
		return -1;
	for (size_t i = 0; i < count; i++) {
		list[i].time_ms = softfail_time(b, i);
		list[i].qid = qbe_get_u64(b + 3 + i * 16 + 8);
		if (list[i].time_ms < 0)
			return -1;
	}
	*n = count;
	return 0;
}

bool
qsoftfail_is_stale(const void *p, size_t len, int64_t before_ms)
{
	const uint8_t *b = p;
	size_t count;

	/* A malformed record is of no use: purged with the stale ones. */
	if (softfail_header(b, len, &count) == -1)
		return true;
	for (size_t i = 0; i < count; i++)
		if (softfail_time(b, i) >= before_ms)
			return false;
	return true;
}

/* Loads an address's list; a corrupt one starts again (logged): losing
 * a count delays a suppression, it never mails anyone by mistake. */
static int
softfail_load(struct qtxn *t, const char *key, size_t klen,
    struct queue_softfail *list, size_t *n)
{
	MDB_val v;
	int rc;

	*n = 0;
	rc = qget(t, QDB_SOFTFAIL, key, klen, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (qrec_decode_softfail(v.mv_data, v.mv_size, list, n) == -1) {
		log_warn("queue: corrupt soft-failure record for <%s>; counting "
		    "from zero", key);
		*n = 0;
	}
	return 0;
}

int
qsoftfail_apply(struct qtxn *t, const struct queue_soft_failure *f,
    int64_t now_ms, bool *suppressed)
{
	char key[QUEUE_ADDRESS_MAX + 1];
	struct queue_softfail *list;
	struct queue_suppression s;
	size_t klen, n, count;
	int rc;

	*suppressed = false;
	if (qaddr_key(f->address, key, &klen) == -1)
		return QRC_INVALID;
	list = qarena_alloc(&t->arena, (QUEUE_SOFTFAIL_MAX + 1) * sizeof(*list));
	if ((rc = softfail_load(t, key, klen, list, &n)) != 0)
		return rc;
	count = queue_softfail_note(list, &n, f->qid, now_ms, f->window_ms);
	if (f->limit == 0 || count < f->limit) {
		qbuf_reset(&t->buf);
		qrec_encode_softfail(&t->buf, list, n);
		return qput(t, QDB_SOFTFAIL, key, klen, t->buf.p, t->buf.len, 0);
	}
	/* Reached: suppressed from now on, and the count starts again. */
	memset(&s, 0, sizeof(s));
	s.address = key;
	s.source = QUEUE_SUPP_BOUNCE;
	s.created_ms = now_ms;
	s.expires_ms = f->expires_ms;
	s.qid = f->qid;
	s.reason = f->reason != NULL ? f->reason : "";
	qbuf_reset(&t->buf);
	qrec_encode_supp(&t->buf, &s);
	if ((rc = qput(t, QDB_SUPPRESSION, key, klen, t->buf.p, t->buf.len,
	    0)) != 0)
		return rc;
	*suppressed = true;
	return qdel(t, QDB_SOFTFAIL, key, klen);
}

int
qsoftfail_forget(struct qtxn *t, const char *address)
{
	char key[QUEUE_ADDRESS_MAX + 1];
	size_t klen;

	if (qaddr_key(address, key, &klen) == -1)
		return QRC_INVALID;
	return qdel(t, QDB_SOFTFAIL, key, klen);
}

int
queue_softfail_get(struct queue *q, const char *address,
    struct queue_softfail *list, size_t *n)
{
	char key[QUEUE_ADDRESS_MAX + 1];
	struct qtxn t;
	size_t klen;
	MDB_val v;
	int rc;

	*n = 0;
	if (qaddr_key(address, key, &klen) == -1)
		return qerr(QUEUE_ERR_INVALID);
	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	rc = qget(&t, QDB_SOFTFAIL, key, klen, &v);
	if (rc == 0 && qrec_decode_softfail(v.mv_data, v.mv_size, list, n) == -1)
		rc = QRC_CORRUPT;
	qtxn_read_end(&t);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return qerr(qrc_to_err(q, rc));
	return 0;
}
