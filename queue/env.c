/*
 * env.c - the LMDB environment of the queue: open and create, errors,
 * transactions, and the recovery LMDB needs from its users (map full →
 * grow and retry, map resized by another process, stale readers, a
 * panicked environment). Runs in every process that opens the queue.
 */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "queue_int.h"
#include "util.h"

const char *const qdb_names[QDB_COUNT] = {
	[QDB_MESSAGES] = "messages",
	[QDB_CONTENT] = "content",
	[QDB_RECIPIENTS] = "recipients",
	[QDB_SCHEDULE] = "schedule",
	[QDB_ACTIVE] = "active",
	[QDB_SUPPRESSION] = "suppression",
	[QDB_EVENTS] = "events",
	[QDB_EVENT_INDEX] = "event_index",
	[QDB_META] = "meta",
	[QDB_QUARANTINE] = "quarantine",
	[QDB_SOFTFAIL] = "softfail",
};

#define QUEUE_MAX_DBS		16
#define QUEUE_MAX_READERS	510	/* every process must use the same */

static _Thread_local enum queue_err queue_errno;

/* ---- errors ---- */

enum queue_err
queue_last_error(void)
{
	return queue_errno;
}

int
qerr(enum queue_err e)
{
	queue_errno = e;
	return -1;
}

const char *
queue_strerror(enum queue_err e)
{
	switch (e) {
	case QUEUE_OK: return "ok";
	case QUEUE_ERR_NOTFOUND: return "not found";
	case QUEUE_ERR_CORRUPT: return "corrupt record";
	case QUEUE_ERR_STATE: return "not possible in this state";
	case QUEUE_ERR_INVALID: return "invalid argument";
	case QUEUE_ERR_FULL: return "queue map full at map_size_max";
	case QUEUE_ERR_NOSPACE: return "no space left on the queue's disk";
	case QUEUE_ERR_IO: return "queue I/O error";
	case QUEUE_ERR_VERSION: return "queue schema newer than this program";
	}
	return "unknown queue error";
}

void
queue_err_smtp(enum queue_err e, unsigned *code, const char **status)
{
	if (e == QUEUE_ERR_FULL || e == QUEUE_ERR_NOSPACE) {
		*code = 452;
		*status = "4.3.1";
	} else {
		*code = 451;
		*status = "4.3.0";
	}
}

bool
qrc_is_fatal(int rc)
{
	return rc != 0 && rc != MDB_NOTFOUND && rc != QRC_CORRUPT &&
	    rc != QRC_STATE && rc != QRC_INVALID;
}

/* True when the file system holding dir has (almost) no room left. */
static bool
is_disk_nearly_full(const char *dir)
{
	struct statvfs st;

	if (statvfs(dir, &st) == -1)
		return false;
	return (uint64_t)st.f_bavail * st.f_frsize < 256 * 1024;
}

enum queue_err
qrc_to_err(struct queue *q, int rc)
{
	switch (rc) {
	case 0: return QUEUE_OK;
	case MDB_NOTFOUND: return QUEUE_ERR_NOTFOUND;
	case QRC_CORRUPT: return QUEUE_ERR_CORRUPT;
	case QRC_STATE: return QUEUE_ERR_STATE;
	case QRC_INVALID: return QUEUE_ERR_INVALID;
	case MDB_MAP_FULL: return QUEUE_ERR_FULL;
	case ENOSPC:
	case EDQUOT:
		return QUEUE_ERR_NOSPACE;
	case EIO:
		/* LMDB reports a short write as EIO: on a full disk that
		 * is what a write that ran out of space returns. */
		return is_disk_nearly_full(q->dir) ? QUEUE_ERR_NOSPACE
		    : QUEUE_ERR_IO;
	case MDB_PANIC:
		if (!atomic_exchange(&q->broken, true))
			log_warn("queue %s: LMDB environment panicked; this "
			    "process must restart", q->dir);
		return QUEUE_ERR_IO;
	default:
		return QUEUE_ERR_IO;
	}
}

/* Logs an LMDB failure and sets the mapped error; returns -1. */
static int
qfail(struct queue *q, const char *what, int rc)
{
	enum queue_err e = qrc_to_err(q, rc);

	/* A writer that tries again on a full disk warns once, not per try. */
	if (e == QUEUE_ERR_NOSPACE && atomic_exchange(&q->full_warned, true))
		log_debug("queue %s: %s: %s", q->dir, what, mdb_strerror(rc));
	else if (e != QUEUE_ERR_NOTFOUND)
		log_warn("queue %s: %s: %s", q->dir, what, mdb_strerror(rc));
	return qerr(e);
}

/* ---- misc ---- */

int64_t
queue_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
queue_is_broken(const struct queue *q)
{
	return atomic_load(&q->broken);
}

void
queue_get_stats(struct queue *q, struct queue_stats *s)
{
	MDB_envinfo info;

	pthread_mutex_lock(&q->stats_lock);
	*s = q->stats;
	pthread_mutex_unlock(&q->stats_lock);
	if (mdb_env_info(q->env, &info) == 0)
		s->map_size = info.me_mapsize;
}

void
queue_options_from_config(struct queue_options *o,
    const struct tern_config *cfg, unsigned flags)
{
	memset(o, 0, sizeof(*o));
	o->dir = cfg->server.queue_dir;
	o->map_size = cfg->queue.map_size;
	o->map_size_max = cfg->queue.map_size_max;
	o->flags = flags;
}

int
queue_reader_check(struct queue *q, int *cleared)
{
	int dead = 0, rc = mdb_reader_check(q->env, &dead);

	if (cleared != NULL)
		*cleared = dead;
	if (rc != 0)
		return qfail(q, "reader check", rc);
	if (dead > 0)
		log_info("queue %s: cleared %d stale reader slot(s)", q->dir,
		    dead);
	return 0;
}

/* ---- the map size ---- */

static uint64_t
page_floor(uint64_t n)
{
	long ps = sysconf(_SC_PAGESIZE);
	uint64_t p = ps > 0 ? (uint64_t)ps : 4096;

	return n / p * p;
}

/*
 * Grows the map after MDB_MAP_FULL: doubles it up to map_size_max. The
 * caller has no transaction open; the exclusive lock waits for the other
 * threads' transactions to end. 0, or MDB_MAP_FULL at the bound.
 */
static int
qmap_grow(struct queue *q, uint64_t failed_size)
{
	MDB_envinfo info;
	uint64_t cur, want, max = page_floor(q->map_size_max);
	int rc = 0;

	pthread_rwlock_wrlock(&q->resize_lock);
	mdb_env_info(q->env, &info);
	cur = info.me_mapsize;
	if (cur > failed_size) {
		/* Another thread grew it meanwhile. */
		pthread_rwlock_unlock(&q->resize_lock);
		return 0;
	}
	if (cur >= max) {
		pthread_rwlock_unlock(&q->resize_lock);
		return MDB_MAP_FULL;
	}
	want = cur > max / 2 ? max : cur * 2;
	rc = mdb_env_set_mapsize(q->env, want);
	pthread_rwlock_unlock(&q->resize_lock);
	if (rc != 0) {
		log_warn("queue %s: growing the map to %" PRIu64 " bytes: %s",
		    q->dir, want, mdb_strerror(rc));
		return rc;
	}
	pthread_mutex_lock(&q->stats_lock);
	q->stats.map_grows++;
	pthread_mutex_unlock(&q->stats_lock);
	log_info("queue %s: map grown from %" PRIu64 " to %" PRIu64 " bytes",
	    q->dir, cur, want);
	return 0;
}

static uint64_t
qmap_size(struct queue *q)
{
	MDB_envinfo info;

	mdb_env_info(q->env, &info);
	return info.me_mapsize;
}

/* Another process grew the map: adopt its size (no txn may be open). */
static int
qmap_adopt(struct queue *q)
{
	int rc;

	pthread_rwlock_wrlock(&q->resize_lock);
	rc = mdb_env_set_mapsize(q->env, 0);
	pthread_rwlock_unlock(&q->resize_lock);
	if (rc == 0)
		log_info("queue %s: map resized by another process, now %"
		    PRIu64 " bytes", q->dir, qmap_size(q));
	return rc;
}

/* ---- transactions ---- */

/* Begins a transaction holding the resize lock shared; handles
 * MDB_MAP_RESIZED. Returns an LMDB code. */
static int
qtxn_begin(struct queue *q, struct qtxn *t, bool write)
{
	int rc, tries;

	memset(t, 0, sizeof(*t));
	t->q = q;
	t->write = write;
	qarena_init(&t->arena);
	qbuf_init(&t->buf);
	if (atomic_load(&q->broken))
		return MDB_PANIC;
	for (tries = 0; tries < 5; tries++) {
		pthread_rwlock_rdlock(&q->resize_lock);
		rc = mdb_txn_begin(q->env, NULL, write ? 0 : MDB_RDONLY,
		    &t->txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&q->resize_lock);
		t->txn = NULL;
		if (rc != MDB_MAP_RESIZED)
			return rc;
		if ((rc = qmap_adopt(q)) != 0)
			return rc;
	}
	return MDB_MAP_RESIZED;
}

/* Ends a transaction that was not committed. */
static void
qtxn_abort(struct qtxn *t)
{
	if (t->txn != NULL) {
		mdb_txn_abort(t->txn);
		t->txn = NULL;
		pthread_rwlock_unlock(&t->q->resize_lock);
	}
	qarena_free(&t->arena);
	qbuf_free(&t->buf);
}

int
qtxn_read_begin(struct queue *q, struct qtxn *t)
{
	int rc = qtxn_begin(q, t, false);

	if (rc != 0) {
		qtxn_abort(t);
		return qfail(q, "read transaction", rc);
	}
	return 0;
}

void
qtxn_read_end(struct qtxn *t)
{
	qtxn_abort(t);
}

/* Writes the meta counters this transaction changed. */
static int
qtxn_flush_meta(struct qtxn *t)
{
	int rc = 0;

	if (t->event_seq_loaded) {
		qbuf_reset(&t->buf);
		qrec_encode_meta_u64(&t->buf, t->event_seq);
		rc = qput(t, QDB_META, "event_seq", 9, t->buf.p, t->buf.len, 0);
	}
	if (rc == 0 && t->quar_seq_loaded) {
		qbuf_reset(&t->buf);
		qrec_encode_meta_u64(&t->buf, t->quar_seq);
		rc = qput(t, QDB_META, "quarantine_seq", 14, t->buf.p,
		    t->buf.len, 0);
	}
	if (rc == 0 && t->last_qid_dirty) {
		qbuf_reset(&t->buf);
		qrec_encode_meta_u64(&t->buf, t->last_qid);
		rc = qput(t, QDB_META, "last_qid", 8, t->buf.p, t->buf.len, 0);
	}
	return rc;
}

int
qtxn_write(struct queue *q, qwrite_fn fn, void *arg)
{
	struct qtxn t;
	uint64_t size;
	int rc, round;

	if (q->readonly)
		return qerr(QUEUE_ERR_INVALID);
	/* Each round grows the map or gives up: the bound keeps it finite. */
	for (round = 0; round < 64; round++) {
		if ((rc = qtxn_begin(q, &t, true)) != 0) {
			qtxn_abort(&t);
			return qfail(q, "write transaction", rc);
		}
		size = qmap_size(q);
		rc = fn(&t, arg);
		if (rc == 0)
			rc = qtxn_flush_meta(&t);
		if (rc == 0) {
			/* mdb_txn_commit frees the txn even when it fails. */
			rc = mdb_txn_commit(t.txn);
			t.txn = NULL;
			pthread_rwlock_unlock(&q->resize_lock);
			if (rc == 0) {
				pthread_mutex_lock(&q->stats_lock);
				q->stats.commits++;
				q->stats.messages += t.n_messages;
				q->stats.quarantined += t.n_quarantined;
				pthread_mutex_unlock(&q->stats_lock);
				atomic_store(&q->full_warned, false);
				qtxn_abort(&t);
				return 0;
			}
		}
		qtxn_abort(&t);
		if (rc != MDB_MAP_FULL)
			return qfail(q, "commit", rc);
		if ((rc = qmap_grow(q, size)) != 0) {
			if (rc == MDB_MAP_FULL) {
				/* A writer that tries again warns once, until
				 * a write commits again. */
				void (*logf)(const char *, ...) TERN_PRINTF(1, 2) =
				    atomic_exchange(&q->full_warned, true) ?
				    log_debug : log_warn;

				logf("queue %s: map full at map_size_max (%"
				    PRIu64 " bytes); refusing the write", q->dir,
				    q->map_size_max);
				return qerr(QUEUE_ERR_FULL);
			}
			return qfail(q, "growing the map", rc);
		}
	}
	return qfail(q, "commit", MDB_MAP_FULL);
}

int
qget(struct qtxn *t, enum qdb db, const void *key, size_t klen, MDB_val *v)
{
	MDB_val k = { klen, (void *)key };
	int rc = mdb_get(t->txn, t->q->dbi[db], &k, v);

	if (rc == 0 && t->write)
		v->mv_data = qarena_dup(&t->arena, v->mv_data, v->mv_size);
	return rc;
}

int
qput(struct qtxn *t, enum qdb db, const void *key, size_t klen,
    const void *val, size_t vlen, unsigned flags)
{
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };

	return mdb_put(t->txn, t->q->dbi[db], &k, &v, flags);
}

int
qdel(struct qtxn *t, enum qdb db, const void *key, size_t klen)
{
	MDB_val k = { klen, (void *)key };
	int rc = mdb_del(t->txn, t->q->dbi[db], &k, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- open and close ---- */

/* Opens every database; a writer creates them and the schema record. */
static int
qopen_dbs(struct queue *q)
{
	MDB_txn *txn;
	MDB_val k = { 6, "schema" }, v;
	uint32_t schema;
	uint64_t last_qid = 0;
	unsigned flags = q->readonly ? 0 : MDB_CREATE;
	int rc, i;

	rc = mdb_txn_begin(q->env, NULL, q->readonly ? MDB_RDONLY : 0, &txn);
	if (rc != 0)
		return qfail(q, "opening the databases", rc);
	for (i = 0; i < QDB_COUNT; i++) {
		rc = mdb_dbi_open(txn, qdb_names[i], flags, &q->dbi[i]);
		if (rc == MDB_NOTFOUND && q->readonly) {
			mdb_txn_abort(txn);
			log_warn("queue %s: not initialized yet (no writer has "
			    "opened it)", q->dir);
			return qerr(QUEUE_ERR_NOTFOUND);
		}
		if (rc != 0) {
			mdb_txn_abort(txn);
			return qfail(q, qdb_names[i], rc);
		}
	}
	rc = mdb_get(txn, q->dbi[QDB_META], &k, &v);
	if (rc == MDB_NOTFOUND && !q->readonly) {
		struct qbuf b;

		qbuf_init(&b);
		qrec_encode_meta_u32(&b, QUEUE_SCHEMA);
		v.mv_data = b.p;
		v.mv_size = b.len;
		rc = mdb_put(txn, q->dbi[QDB_META], &k, &v, 0);
		qbuf_free(&b);
		schema = QUEUE_SCHEMA;
	} else if (rc == 0 &&
	    qrec_decode_meta_u32(v.mv_data, v.mv_size, &schema) == -1) {
		mdb_txn_abort(txn);
		log_warn("queue %s: the schema record is corrupt", q->dir);
		return qerr(QUEUE_ERR_CORRUPT);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return qfail(q, "reading the schema", rc);
	}
	if (schema != QUEUE_SCHEMA) {
		mdb_txn_abort(txn);
		log_warn("queue %s: schema %u, this program knows %u", q->dir,
		    schema, QUEUE_SCHEMA);
		return qerr(QUEUE_ERR_VERSION);
	}
	k.mv_size = 8;
	k.mv_data = "last_qid";
	if (mdb_get(txn, q->dbi[QDB_META], &k, &v) == 0 &&
	    qrec_decode_meta_u64(v.mv_data, v.mv_size, &last_qid) == 0)
		qid_seed(last_qid);
	/* Even a read-only txn is committed: that keeps its dbi handles. */
	if ((rc = mdb_txn_commit(txn)) != 0)
		return qfail(q, "creating the databases", rc);
	if (!q->readonly)
		q->stats.commits++;
	return 0;
}

struct queue *
queue_open(const struct queue_options *o)
{
	struct queue *q = xcalloc(1, sizeof(*q));
	const char *unsafe = getenv("TERN_QUEUE_UNSAFE_NOSYNC");
	unsigned flags = MDB_NOTLS;
	uint64_t want;
	int rc;

	q->dir = xstrdup(o->dir);
	q->readonly = (o->flags & QUEUE_OPEN_READONLY) != 0;
	q->map_size_max = o->map_size_max > o->map_size ? o->map_size_max :
	    o->map_size;
	atomic_init(&q->broken, false);
	atomic_init(&q->full_warned, false);
	pthread_rwlock_init(&q->resize_lock, NULL);
	pthread_mutex_init(&q->stats_lock, NULL);
	if (q->readonly)
		flags |= MDB_RDONLY;
	if (unsafe != NULL && strcmp(unsafe, "1") == 0) {
		flags |= MDB_NOSYNC;
		log_warn("TERN_QUEUE_UNSAFE_NOSYNC is set: queue commits are "
		    "NOT durable (test only)");
	}
	if (!q->readonly && mkdir_p(q->dir, 0750) == -1) {
		log_warn("queue %s: cannot create the directory: %s", q->dir,
		    strerror(errno));
		qerr(QUEUE_ERR_IO);
		goto fail;
	}
	if ((rc = mdb_env_create(&q->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(q->env, QUEUE_MAX_DBS)) != 0 ||
	    (rc = mdb_env_set_maxreaders(q->env, QUEUE_MAX_READERS)) != 0) {
		qfail(q, "creating the environment", rc);
		goto fail;
	}
	/* Opened without a size, the map takes the environment's recorded
	 * size; it is then raised to map_size, never shrunk. */
	if ((rc = mdb_env_open(q->env, q->dir, flags, 0660)) != 0) {
		if (rc == ENOENT && q->readonly) {
			log_warn("queue %s: not initialized yet (no writer has "
			    "opened it)", q->dir);
			qerr(QUEUE_ERR_NOTFOUND);
		} else {
			qfail(q, "opening the environment", rc);
		}
		goto fail;
	}
	want = page_floor(o->map_size);
	if (qmap_size(q) < want &&
	    (rc = mdb_env_set_mapsize(q->env, want)) != 0) {
		qfail(q, "setting the map size", rc);
		goto fail;
	}
	if (queue_reader_check(q, NULL) == -1 || qopen_dbs(q) == -1)
		goto fail;
	return q;
fail:
	{
		enum queue_err e = queue_last_error();

		queue_close(q);
		qerr(e);
	}
	return NULL;
}

void
queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	if (q->env != NULL)
		mdb_env_close(q->env);
	pthread_rwlock_destroy(&q->resize_lock);
	pthread_mutex_destroy(&q->stats_lock);
	free(q->dir);
	free(q);
}
