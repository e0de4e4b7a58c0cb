/*
 * queue_int.h - libternq internals shared by its files: the environment,
 * transactions with map growth, an arena for copies, the record helpers
 * used inside write transactions, and the quarantine. Not for daemons:
 * they use queue.h.
 */
#ifndef TERN_QUEUE_INT_H
#define TERN_QUEUE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "queue.h"
#include "record.h"

/* The named databases; qdb_names[] in env.c. */
enum qdb {
	QDB_MESSAGES,
	QDB_CONTENT,
	QDB_RECIPIENTS,
	QDB_SCHEDULE,
	QDB_ACTIVE,
	QDB_SUPPRESSION,
	QDB_EVENTS,
	QDB_EVENT_INDEX,
	QDB_META,
	QDB_QUARANTINE,
	QDB_SOFTFAIL,
	QDB_COUNT
};

extern const char *const qdb_names[QDB_COUNT];

struct queue {
	MDB_env *env;
	MDB_dbi dbi[QDB_COUNT];
	char *dir;
	uint64_t map_size_max;
	bool readonly;
	atomic_bool broken;		/* MDB_PANIC seen */
	atomic_bool full_warned;	/* "full" logged; again only once a
					 * write has committed */
	/* Transactions hold it shared; resizing the map holds it exclusive,
	 * since LMDB allows that only with no transaction open. */
	pthread_rwlock_t resize_lock;
	pthread_mutex_t stats_lock;
	struct queue_stats stats;
};

/* Internal result codes beside LMDB's (0, errno, MDB_*). */
#define QRC_CORRUPT	(-29001)	/* a record failed to decode */
#define QRC_STATE	(-29002)	/* the operation does not apply */
#define QRC_INVALID	(-29003)	/* bad argument */

/* True for codes that abort the whole transaction. */
bool qrc_is_fatal(int rc);
/* Maps an LMDB or internal code to a queue error. */
enum queue_err qrc_to_err(struct queue *q, int rc);
/* Sets this thread's error and returns -1. */
int qerr(enum queue_err e);

/* ---- arena: copies that live as long as a transaction or a result ---- */

struct qarena_block;

struct qarena {
	struct qarena_block *head;
};

void qarena_init(struct qarena *a);
void qarena_free(struct qarena *a);
void *qarena_alloc(struct qarena *a, size_t n);
void *qarena_dup(struct qarena *a, const void *p, size_t n);
char *qarena_strdup(struct qarena *a, const char *s);
/* Deep copies whose strings live in the arena. */
void qcopy_msg_info(struct qarena *a, struct queue_msg_info *dst,
    const struct queue_msg_info *src);
void qcopy_rcpt_info(struct qarena *a, struct queue_rcpt_info *dst,
    const struct queue_rcpt_info *src);

/* ---- transactions ---- */

struct qtxn {
	struct queue *q;
	MDB_txn *txn;
	bool write;
	struct qarena arena;		/* copies of values read in this txn */
	struct qbuf buf;		/* scratch for encoding */
	/* meta counters, loaded on first use, written before the commit */
	uint64_t event_seq;
	bool event_seq_loaded;
	uint64_t quar_seq;
	bool quar_seq_loaded;
	uint64_t last_qid;
	bool last_qid_dirty;
	uint64_t n_quarantined;
	uint64_t n_messages;		/* new messages (for the stats) */
};

/* Begins a read transaction; 0 or -1 with the error set. */
int qtxn_read_begin(struct queue *q, struct qtxn *t);
void qtxn_read_end(struct qtxn *t);

/* The body of a write transaction: returns 0 or an LMDB code. It may run
 * several times (after the map grew) and must reset its outputs first. */
typedef int (*qwrite_fn)(struct qtxn *t, void *arg);

/* Runs fn in a write transaction and commits with sync, growing the map
 * and retrying on MDB_MAP_FULL; 0 or -1 with the error set. */
int qtxn_write(struct queue *q, qwrite_fn fn, void *arg);

/* queue_update_commit_claim()'s claim half (claim.c): its state, its
 * transaction body, and its result (NULL after a failure). */
struct claim_arg;
struct claim_arg *qclaim_arg_new(int64_t now_ms, size_t max);
int qclaim_txn(struct qtxn *t, void *arg);
struct queue_claim *qclaim_arg_finish(struct claim_arg *a, bool ok);

/* mdb_get into *v; in a write txn the bytes are copied into the arena,
 * since a later put may move them. 0, MDB_NOTFOUND or an LMDB code. */
int qget(struct qtxn *t, enum qdb db, const void *key, size_t klen,
    MDB_val *v);
int qput(struct qtxn *t, enum qdb db, const void *key, size_t klen,
    const void *val, size_t vlen, unsigned flags);
/* Deletes; a missing key is not an error. */
int qdel(struct qtxn *t, enum qdb db, const void *key, size_t klen);

/* ---- records inside a transaction (store.c) ---- */

/* 0, MDB_NOTFOUND, QRC_CORRUPT (logged) or an LMDB code. */
int qload_msg(struct qtxn *t, uint64_t qid, struct queue_msg_info *m,
    MDB_val *raw);
int qload_rcpt(struct qtxn *t, uint64_t qid, uint32_t index,
    struct queue_rcpt_info *r, MDB_val *raw);
int qput_msg(struct qtxn *t, const struct queue_msg_info *m);
int qput_rcpt(struct qtxn *t, const struct queue_rcpt_info *r);
int qsched_put(struct qtxn *t, int64_t due_ms, uint64_t qid, uint32_t index);
int qsched_del(struct qtxn *t, int64_t due_ms, uint64_t qid, uint32_t index);
int qactive_put(struct qtxn *t, uint64_t qid, uint32_t index, int64_t now_ms);
int qactive_del(struct qtxn *t, uint64_t qid, uint32_t index);
/* Checks that the content chunks of m exist and add up; QRC_CORRUPT. */
int qcheck_content(struct qtxn *t, const struct queue_msg_info *m);
/* True when the recipient still needs qmgr: non-final or a DSN pending. */
bool qrcpt_needs_work(const struct queue_rcpt_info *r);
/* Removes every record of a message (schedule, active, recipients,
 * content, the message). */
int qremove_msg(struct qtxn *t, const struct queue_msg_info *m);
/* Soft failures (softfail.c): counts one, suppressing the address when
 * the limit is reached (*suppressed); forget drops an address's count. */
int qsoftfail_apply(struct qtxn *t, const struct queue_soft_failure *f,
    int64_t now_ms, bool *suppressed);
int qsoftfail_forget(struct qtxn *t, const char *address);
/* True when every entry of a list value is older than before_ms (or the
 * value is corrupt): nothing of it can count any more. */
bool qsoftfail_is_stale(const void *p, size_t len, int64_t before_ms);
/* Appends an event (assigns e->seq) with its index entry. */
int qevent_append(struct qtxn *t, struct queue_event *e);
/* An event about a recipient, from its record. */
int qevent_rcpt(struct qtxn *t, uint8_t type, int64_t time_ms,
    const struct queue_rcpt_info *r, const char *text);

/* Puts an ACTIVE recipient back in the schedule, due at due_ms (claim.c;
 * requeue and unclaim). A missing or finished one just loses its entry. */
int qrequeue_rcpt(struct qtxn *t, uint64_t qid, uint32_t index, int64_t due_ms,
    bool *requeued);

/* ---- quarantine (quarantine.c) ---- */

/* Moves one record (key, raw value) of db to the quarantine; logged. */
int qquarantine_record(struct qtxn *t, enum qdb db, const void *key,
    size_t klen, const void *val, size_t vlen, const char *why);
/* A corrupt recipient: moved, counted as failed in its message (which is
 * removed when that finishes it). */
int qquarantine_rcpt(struct qtxn *t, uint64_t qid, uint32_t index,
    const MDB_val *raw, const char *why);
/* A corrupt message record or content: the whole message is moved. */
int qquarantine_msg(struct qtxn *t, uint64_t qid, const char *why);

/* ---- queue ids (qid.c) ---- */

uint64_t qid_next(void);
/* Every later id is above committed_max. */
void qid_seed(uint64_t committed_max);

/* Formats a qid into a static-free buffer for logs. */
#define QID_STR(qid, buf) (queue_id_format((qid), (buf)), (buf))

#endif
