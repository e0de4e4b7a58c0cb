/*
 * qtest.h - helpers shared by the queue's unit tests: a scratch store in
 * a temporary directory, message builders, fault injection for
 * fdatasync/fsync (this executable's definitions take the place of libc's,
 * also for liblmdb), and a checker of the store's invariants (SCHEMA.md).
 */
#ifndef TERN_QTEST_H
#define TERN_QTEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "queue_int.h"

/* ---- fault injection and counting of syncs ---- */

static atomic_int qtest_sync_errno;	/* 0: real syncs; else fail with it */
static atomic_long qtest_sync_count;	/* successful data syncs */

static atomic_int qtest_dsync_write_errno; /* fail writes to O_DSYNC fds */

int fdatasync(int fd);
int fsync(int fd);
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off);

/* LMDB writes its meta page with pwrite through an O_DSYNC descriptor:
 * failing exactly those writes makes LMDB mark the environment fatal. */
ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	int e = atomic_load(&qtest_dsync_write_errno);

	if (e != 0) {
		int fl = fcntl(fd, F_GETFL);

		if (fl != -1 && (fl & O_DSYNC)) {
			errno = e;
			return -1;
		}
	}
	return (ssize_t)syscall(SYS_pwrite64, fd, buf, n, off);
}

int
fdatasync(int fd)
{
	int e = atomic_load(&qtest_sync_errno);

	if (e != 0) {
		errno = e;
		return -1;
	}
	atomic_fetch_add(&qtest_sync_count, 1);
	return (int)syscall(SYS_fdatasync, fd);
}

int
fsync(int fd)
{
	int e = atomic_load(&qtest_sync_errno);

	if (e != 0) {
		errno = e;
		return -1;
	}
	atomic_fetch_add(&qtest_sync_count, 1);
	return (int)syscall(SYS_fsync, fd);
}

/* ---- a scratch store ---- */

struct qtest {
	char dir[256];
	struct queue *q;
};

static inline void
qtest_rm_dir(const char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static inline struct queue *
qtest_open_dir(const char *dir, uint64_t map_size, uint64_t map_max,
    unsigned flags)
{
	struct queue_options o;

	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.map_size = map_size;
	o.map_size_max = map_max;
	o.flags = flags;
	return queue_open(&o);
}

static inline struct qtest *
qtest_new(uint64_t map_size, uint64_t map_max)
{
	struct qtest *t = calloc(1, sizeof(*t));
	const char *tmp = getenv("TMPDIR");

	snprintf(t->dir, sizeof(t->dir), "%s/ternq-test.XXXXXX",
	    tmp ? tmp : "/tmp");
	if (mkdtemp(t->dir) == NULL)
		abort();
	t->q = qtest_open_dir(t->dir, map_size, map_max, 0);
	if (t->q == NULL)
		abort();
	return t;
}

static inline void
qtest_free(struct qtest *t)
{
	if (t == NULL)
		return;
	queue_close(t->q);
	qtest_rm_dir(t->dir);
	free(t);
}

/* A message with n recipients r<i>@<domain> and len bytes of content. */
static inline struct queue_msg *
qtest_msg(unsigned n, size_t len, const char *domain)
{
	struct queue_msg_info env;
	struct queue_msg *m;
	char addr[128], line[80];
	size_t done = 0;
	unsigned i;

	memset(&env, 0, sizeof(env));
	env.sender = "sender@example.test";
	env.source = CLEANUP_SOURCE_SUBMISSION;
	env.auth_user = "alice";
	env.client_addr = "192.0.2.1";
	m = queue_msg_new(&env);
	for (i = 0; i < n; i++) {
		snprintf(addr, sizeof(addr), "r%u@%s", i, domain);
		if (queue_msg_add_rcpt(m, addr, "", 0) == -1)
			abort();
	}
	/* Content whose bytes say where they are: chunk edges show. */
	while (done < len) {
		size_t k;

		snprintf(line, sizeof(line), "%010zu line\r\n", done);
		k = strlen(line);
		if (k > len - done)
			k = len - done;
		queue_msg_append(m, line, k);
		done += k;
	}
	return m;
}

/* Commits one message; returns its qid (aborts the test on failure). */
static inline uint64_t
qtest_commit1(struct queue *q, struct queue_msg *m)
{
	struct queue_batch *b = queue_batch_new();
	uint64_t qid;

	queue_batch_add(b, m);
	if (queue_batch_commit(q, b) == -1 ||
	    queue_batch_status(b, 0) != QUEUE_OK)
		abort();
	qid = queue_batch_qid(b, 0);
	queue_batch_free(b);
	return qid;
}

/* ---- raw access for corrupting records ---- */

struct raw_put {
	enum qdb db;
	const void *key;
	size_t klen;
	const void *val;	/* NULL: delete */
	size_t vlen;
};

static inline int
raw_put_txn(struct qtxn *t, void *arg)
{
	struct raw_put *p = arg;

	if (p->val == NULL)
		return qdel(t, p->db, p->key, p->klen);
	return qput(t, p->db, p->key, p->klen, p->val, p->vlen, 0);
}

static inline void
qtest_raw_put(struct queue *q, enum qdb db, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	struct raw_put p = { db, key, klen, val, vlen };

	if (qtxn_write(q, raw_put_txn, &p) == -1)
		abort();
}

/* Counts the entries of a database. */
static inline size_t
qtest_count(struct queue *q, enum qdb db)
{
	struct qtxn t;
	MDB_stat st;

	if (qtxn_read_begin(q, &t) == -1)
		abort();
	mdb_stat(t.txn, q->dbi[db], &st);
	qtxn_read_end(&t);
	return st.ms_entries;
}

/*
 * Checks SCHEMA.md's invariants over the whole store: every recipient is
 * in the active db iff ACTIVE, in the schedule iff waiting (not ACTIVE,
 * message not held, work left) at exactly next_attempt_ms, never both;
 * message counters match the recipients; no entry is left dangling.
 * Returns the number of violations (printed).
 */
static inline int
qtest_check_invariants(struct queue *q)
{
	struct qtxn t;
	MDB_cursor *c;
	MDB_val k, v, x;
	int bad = 0, rc;

	if (qtxn_read_begin(q, &t) == -1)
		abort();
	mdb_cursor_open(t.txn, q->dbi[QDB_MESSAGES], &c);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct queue_msg_info m;
		uint32_t i, del = 0, fail = 0, dsn = 0;
		uint64_t qid = qbe_get_u64(k.mv_data);

		if (qrec_decode_msg(v.mv_data, v.mv_size, qid, &m) == -1) {
			fprintf(stderr, "invariant: message %llx corrupt\n",
			    (unsigned long long)qid);
			bad++;
			continue;
		}
		if (queue_msg_is_finished(&m)) {
			fprintf(stderr, "invariant: finished message kept\n");
			bad++;
		}
		for (i = 0; i < m.n_rcpt; i++) {
			struct queue_rcpt_info r;
			uint8_t rk[QKEY_RCPT_LEN], sk[QKEY_SCHED_LEN];
			bool in_active, in_sched, want_sched;

			qkey_rcpt(rk, qid, i);
			k.mv_size = sizeof(rk);
			k.mv_data = rk;
			if (mdb_get(t.txn, q->dbi[QDB_RECIPIENTS], &k, &x) != 0 ||
			    qrec_decode_rcpt(x.mv_data, x.mv_size, qid, i,
			    &r) == -1)
				continue;	/* quarantined */
			if (r.state == QUEUE_RCPT_DELIVERED)
				del++;
			if (r.state == QUEUE_RCPT_FAILED)
				fail++;
			if (r.flags & QUEUE_RF_DSN_MASK)
				dsn++;
			in_active = mdb_get(t.txn, q->dbi[QDB_ACTIVE], &k,
			    &x) == 0;
			qkey_sched(sk, r.next_attempt_ms, qid, i);
			k.mv_size = sizeof(sk);
			k.mv_data = sk;
			in_sched = mdb_get(t.txn, q->dbi[QDB_SCHEDULE], &k,
			    &x) == 0;
			want_sched = !(r.flags & QUEUE_RF_ACTIVE) && !m.hold &&
			    qrcpt_needs_work(&r);
			if (in_active != ((r.flags & QUEUE_RF_ACTIVE) != 0)) {
				fprintf(stderr, "invariant: %llx/%u active %d "
				    "flag %d\n", (unsigned long long)qid, i,
				    in_active, r.flags);
				bad++;
			}
			if (in_sched != want_sched) {
				fprintf(stderr, "invariant: %llx/%u scheduled "
				    "%d, should be %d\n",
				    (unsigned long long)qid, i, in_sched,
				    want_sched);
				bad++;
			}
		}
		if (del != m.n_delivered || fail > m.n_failed ||
		    dsn != m.n_dsn_pending) {
			fprintf(stderr, "invariant: counters of %llx\n",
			    (unsigned long long)qid);
			bad++;
		}
	}
	mdb_cursor_close(c);
	/* Every schedule and active entry points to a recipient. */
	mdb_cursor_open(t.txn, q->dbi[QDB_SCHEDULE], &c);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct queue_sched_entry e;
		uint8_t rk[QKEY_RCPT_LEN];
		MDB_val key = { sizeof(rk), rk };

		if (qkey_sched_decode(k.mv_data, k.mv_size, &e) == -1)
			continue;
		qkey_rcpt(rk, e.qid, e.rcpt);
		if (mdb_get(t.txn, q->dbi[QDB_RECIPIENTS], &key, &x) != 0) {
			fprintf(stderr, "invariant: dangling schedule entry\n");
			bad++;
		}
	}
	mdb_cursor_close(c);
	mdb_cursor_open(t.txn, q->dbi[QDB_ACTIVE], &c);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (mdb_get(t.txn, q->dbi[QDB_RECIPIENTS], &k, &x) != 0) {
			fprintf(stderr, "invariant: dangling active entry\n");
			bad++;
		}
	}
	mdb_cursor_close(c);
	qtxn_read_end(&t);
	return bad;
}

#endif
