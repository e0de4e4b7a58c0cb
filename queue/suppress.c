/*
 * suppress.c - the suppression list: look-ups of many addresses in one
 * read transaction (cleanup at RCPT), listing, and purging expired
 * entries. Adding and removing are update operations (update.c).
 * Look-ups run in cleanup and ternctl; purge in tern-qmgr.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue_int.h"
#include "util.h"

#define PURGE_PER_TXN	1000

/* True when the entry still suppresses at now_ms. */
static bool
is_supp_live(const struct queue_suppression *s, int64_t now_ms)
{
	return s->expires_ms == 0 || s->expires_ms > now_ms;
}

int
queue_suppress_check(struct queue *q, const char *const *addrs, size_t n,
    int64_t now_ms, struct queue_supp_hit *hits)
{
	struct qtxn t;
	char key[QUEUE_ADDRESS_MAX + 1];
	struct queue_suppression s;
	size_t i, klen;
	MDB_val v;
	int rc;

	memset(hits, 0, n * sizeof(*hits));
	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		if (qaddr_key(addrs[i], key, &klen) == -1)
			continue;
		rc = qget(&t, QDB_SUPPRESSION, key, klen, &v);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0) {
			qtxn_read_end(&t);
			return qerr(qrc_to_err(q, rc));
		}
		if (qrec_decode_supp(v.mv_data, v.mv_size, key, &s) == -1) {
			/* Refusing is recoverable; mailing a complainer
			 * is not (SCHEMA.md). */
			log_warn("queue: corrupt suppression record for <%s>; "
			    "treated as suppressed", key);
			hits[i].found = true;
			tern_strlcpy(hits[i].reason, "corrupt suppression record",
			    sizeof(hits[i].reason));
			continue;
		}
		if (!is_supp_live(&s, now_ms))
			continue;
		hits[i].found = true;
		hits[i].source = s.source;
		hits[i].expires_ms = s.expires_ms;
		tern_strlcpy(hits[i].reason, s.reason, sizeof(hits[i].reason));
	}
	qtxn_read_end(&t);
	return 0;
}

/* True when hay contains needle, ASCII case-insensitively. */
static bool
has_substring_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay != '\0'; hay++)
		if (has_ascii_prefix_ci(hay, needle))
			return true;
	return n == 0;
}

int
queue_suppress_list(struct queue *q, uint8_t source, const char *reason,
    int64_t now_ms, queue_supp_cb cb, void *arg)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v;
	struct queue_suppression s;
	char key[QUEUE_ADDRESS_MAX + 1];
	int rc;

	if (qtxn_read_begin(q, &t) == -1)
		return -1;
	if ((rc = mdb_cursor_open(t.txn, q->dbi[QDB_SUPPRESSION], &c)) != 0) {
		qtxn_read_end(&t);
		return qerr(qrc_to_err(q, rc));
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size == 0 || k.mv_size > QUEUE_ADDRESS_MAX ||
		    memchr(k.mv_data, 0, k.mv_size) != NULL)
			continue;
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = '\0';
		if (qrec_decode_supp(v.mv_data, v.mv_size, key, &s) == -1) {
			log_warn("queue: corrupt suppression record for <%s> "
			    "skipped in the listing", key);
			continue;
		}
		if (!is_supp_live(&s, now_ms) ||
		    (source != 0 && s.source != source) ||
		    (reason != NULL && !has_substring_ci(s.reason, reason)))
			continue;
		if (cb(arg, &s) != 0)
			break;
	}
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	if (qrc_is_fatal(rc))
		return qerr(qrc_to_err(q, rc));
	return 0;
}

struct purge_arg {
	enum qdb db;			/* suppression or softfail */
	int64_t now_ms;			/* suppression: expired at */
	int64_t before_ms;		/* softfail: nothing since */
	char start[QUEUE_ADDRESS_MAX + 1];	/* resume past this key */
	size_t start_len;
	char after[QUEUE_ADDRESS_MAX + 1];	/* the last key scanned */
	size_t after_len;
	size_t n;
	bool more;
};

/* Deletes up to PURGE_PER_TXN expired entries after a->after. */
static int
purge_txn(struct qtxn *t, void *varg)
{
	struct purge_arg *a = varg;
	MDB_cursor *c;
	MDB_val k, v, *keys;
	struct queue_suppression s;
	size_t n = 0, scanned = 0, i;
	int rc;

	a->n = 0;
	a->more = false;
	keys = qarena_alloc(&t->arena, PURGE_PER_TXN * sizeof(*keys));
	if ((rc = mdb_cursor_open(t->txn, t->q->dbi[a->db], &c)) != 0)
		return rc;
	memcpy(a->after, a->start, a->start_len);
	a->after_len = a->start_len;
	k.mv_size = a->start_len;
	k.mv_data = a->start;
	rc = a->start_len > 0 ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) :
	    mdb_cursor_get(c, &k, &v, MDB_FIRST);
	/* SET_RANGE lands on the resume key itself when it still exists. */
	if (rc == 0 && a->start_len > 0 && k.mv_size == a->start_len &&
	    memcmp(k.mv_data, a->start, a->start_len) == 0)
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (n == PURGE_PER_TXN || scanned == 100 * PURGE_PER_TXN) {
			a->more = true;
			break;
		}
		scanned++;
		if (k.mv_size <= QUEUE_ADDRESS_MAX) {
			memcpy(a->after, k.mv_data, k.mv_size);
			a->after_len = k.mv_size;
		}
		if (a->db == QDB_SOFTFAIL) {
			if (!qsoftfail_is_stale(v.mv_data, v.mv_size,
			    a->before_ms))
				continue;
		} else if (qrec_decode_supp(v.mv_data, v.mv_size, "", &s) ==
		    -1 || is_supp_live(&s, a->now_ms)) {
			continue;
		}
		keys[n].mv_size = k.mv_size;
		keys[n].mv_data = qarena_dup(&t->arena, k.mv_data, k.mv_size);
		n++;
	}
	mdb_cursor_close(c);
	if (qrc_is_fatal(rc))
		return rc;
	for (i = 0; i < n; i++) {
		if ((rc = qdel(t, a->db, keys[i].mv_data,
		    keys[i].mv_size)) != 0)
			return rc;
		a->n++;
	}
	return 0;
}

static int
purge(struct queue *q, struct purge_arg *arg, size_t *n)
{
	struct purge_arg a = *arg;
	size_t total = 0;
	int rounds;

	for (rounds = 0; rounds < 100000; rounds++) {
		if (qtxn_write(q, purge_txn, &a) == -1) {
			if (n != NULL)
				*n = total;
			return -1;
		}
		memcpy(a.start, a.after, a.after_len);
		a.start_len = a.after_len;
		total += a.n;
		if (!a.more)
			break;
	}
	if (n != NULL)
		*n = total;
	return 0;
}

int
queue_suppress_purge(struct queue *q, int64_t now_ms, size_t *n)
{
	struct purge_arg a;

	memset(&a, 0, sizeof(a));
	a.db = QDB_SUPPRESSION;
	a.now_ms = now_ms;
	return purge(q, &a, n);
}

int
queue_softfail_purge(struct queue *q, int64_t before_ms, size_t *n)
{
	struct purge_arg a;

	memset(&a, 0, sizeof(a));
	a.db = QDB_SOFTFAIL;
	a.before_ms = before_ms;
	return purge(q, &a, n);
}
