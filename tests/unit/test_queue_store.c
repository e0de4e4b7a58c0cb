/*
 * test_queue_store.c - unit tests for libternq over a real LMDB store in
 * a temporary directory: batch commit and read back, schedule order, the
 * recipient state machine (claim, results, DSNs, hold, release, delete,
 * flush, requeue), suppression with expiry, events with retention, map
 * growth and refusal at the bound, disk errors on commit, corrupt
 * records quarantined and skipped, stale readers of killed processes.
 * The store's invariants (SCHEMA.md) are checked after each flow.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "log.h"
#include "qtest.h"

#define MB (1024 * 1024)

static int
setup(void **state)
{
	*state = qtest_new(4 * MB, 64 * MB);
	return 0;
}

static int
teardown(void **state)
{
	qtest_free(*state);
	return 0;
}

/* ---- batch commit and reading back ---- */

struct content_acc {
	char *buf;
	size_t len;
	uint32_t next;
};

static int
content_cb(void *arg, uint32_t index, const void *data, size_t len)
{
	struct content_acc *a = arg;

	assert_int_equal(index, a->next);
	a->next++;
	a->buf = realloc(a->buf, a->len + len);
	memcpy(a->buf + a->len, data, len);
	a->len += len;
	return 0;
}

/* Reads a message's content chunk by chunk, as a delivery agent does. */
static void
read_content(struct queue *q, uint64_t qid, struct content_acc *a)
{
	uint32_t n = 0;
	int rounds = 0;

	memset(a, 0, sizeof(*a));
	do {
		assert_int_equal(queue_content_read(q, qid, a->next, 1,
		    content_cb, a, &n), 0);
		assert_true(++rounds < 1000);
	} while (n == 1);
}

/* The content qtest_msg() makes for len bytes. */
static char *
expected_content(size_t len)
{
	char *buf = malloc(len + 32), line[80];
	size_t done = 0;

	while (done < len) {
		snprintf(line, sizeof(line), "%010zu line\r\n", done);
		memcpy(buf + done, line, strlen(line));
		done += strlen(line);
	}
	return buf;
}

static void
test_batch_roundtrip(void **state)
{
	struct qtest *t = *state;
	struct queue_batch *b = queue_batch_new();
	struct queue_msg *m[4];
	char *ref;
	struct queue_loaded_msg *l;
	struct queue_stats st;
	struct content_acc a;
	uint64_t qid[4], taken;
	size_t i, big = 3 * QUEUE_CHUNK_SIZE + 100;
	struct queue_msg_info env;

	m[0] = qtest_msg(2, 500, "a.test");
	m[1] = qtest_msg(1, big, "b.test");
	memset(&env, 0, sizeof(env));
	env.sender = "";
	env.hold = true;
	env.body = CLEANUP_BODY_8BITMIME;
	env.ret = CLEANUP_RET_FULL;
	env.envid = "ENV42";
	env.smtputf8 = true;
	/* An id taken before the message exists (tern-cleanup at BEGIN) is
	 * the one it is committed under. */
	env.qid = taken = queue_qid_new();
	m[2] = queue_msg_new(&env);
	assert_true(queue_msg_id(m[2]) == taken);
	assert_int_equal(queue_msg_add_rcpt(m[2], "held@c.test",
	    "rfc822;held@c.test", CLEANUP_NOTIFY_SUCCESS), 0);
	queue_msg_append(m[2], "x", 1);
	m[3] = qtest_msg(0, 10, "d.test");		/* no recipient */
	assert_int_equal(queue_msg_add_rcpt(m[3], "", "", 0), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_INVALID);
	for (i = 0; i < 4; i++)
		assert_int_equal(queue_batch_add(b, m[i]), i);
	assert_true(queue_msg_size(m[1]) == big);
	assert_int_equal(queue_batch_commit(t->q, b), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(queue_batch_status(b, i), QUEUE_OK);
		qid[i] = queue_batch_qid(b, i);
		assert_true(qid[i] == queue_msg_id(m[i]));
		if (i > 0)
			assert_true(qid[i] > qid[i - 1]);
	}
	assert_int_equal(queue_batch_status(b, 3), QUEUE_ERR_INVALID);
	queue_get_stats(t->q, &st);
	assert_true(st.commits == 2);		/* the store's creation, the batch */
	assert_true(st.messages == 3);

	/* Content comes back byte for byte, chunk by chunk. */
	read_content(t->q, qid[1], &a);
	assert_int_equal(a.next, 4);
	assert_int_equal(a.len, big);
	ref = expected_content(big);
	assert_memory_equal(a.buf, ref, big);
	free(ref);
	free(a.buf);

	assert_int_equal(queue_load(t->q, qid[2], &l), 0);
	assert_string_equal(l->info.sender, "");
	assert_true(l->info.hold);
	assert_true(l->info.smtputf8);
	assert_int_equal(l->info.body, CLEANUP_BODY_8BITMIME);
	assert_int_equal(l->info.ret, CLEANUP_RET_FULL);
	assert_string_equal(l->info.envid, "ENV42");
	assert_int_equal(l->n_rcpts, 1);
	assert_string_equal(l->rcpts[0].address, "held@c.test");
	assert_string_equal(l->rcpts[0].orcpt, "rfc822;held@c.test");
	assert_int_equal(l->rcpts[0].notify, CLEANUP_NOTIFY_SUCCESS);
	assert_int_equal(l->rcpts[0].state, QUEUE_RCPT_QUEUED);
	queue_loaded_free(l);
	assert_int_equal(queue_load(t->q, qid[0], &l), 0);
	assert_int_equal(l->n_rcpts, 2);
	assert_string_equal(l->info.auth_user, "alice");
	assert_string_equal(l->info.client_addr, "192.0.2.1");
	assert_true(l->info.size == 500);
	assert_int_equal(l->info.n_chunks, 1);
	queue_loaded_free(l);

	/* Schedule: every recipient of the non-held messages; events: one
	 * "queued" per recipient. */
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 3);
	assert_int_equal(qtest_count(t->q, QDB_EVENTS), 4);
	assert_int_equal(qtest_count(t->q, QDB_CONTENT), 1 + 4 + 1);
	assert_int_equal(queue_load(t->q, qid[2] + 1, &l), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_NOTFOUND);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	queue_batch_free(b);
}

/* The content a delivery agent streams is exactly what was appended, in
 * pieces of any size across chunk edges. */
static void
test_content_pieces(void **state)
{
	struct qtest *t = *state;
	struct queue_msg_info env;
	struct queue_msg *m;
	struct content_acc a;
	size_t len = 2 * QUEUE_CHUNK_SIZE + 5, off = 0, piece = 1;
	char *data = malloc(len);
	uint64_t qid;
	uint32_t n;
	size_t i;

	for (i = 0; i < len; i++)
		data[i] = (char)('a' + i % 23);
	memset(&env, 0, sizeof(env));
	env.sender = "s@x.test";
	m = queue_msg_new(&env);
	queue_msg_add_rcpt(m, "r@x.test", NULL, 0);
	while (off < len) {
		size_t k = piece < len - off ? piece : len - off;

		queue_msg_append(m, data + off, k);
		off += k;
		piece = piece * 3 + 1;
	}
	qid = qtest_commit1(t->q, m);
	read_content(t->q, qid, &a);
	assert_int_equal(a.len, len);
	assert_memory_equal(a.buf, data, len);
	free(a.buf);
	/* Reading past the end reads nothing; two at a time works too. */
	assert_int_equal(queue_content_read(t->q, qid, 3, 5, content_cb, &a,
	    &n), 0);
	assert_int_equal(n, 0);
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_content_read(t->q, qid, 0, 2, content_cb, &a,
	    &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(a.len, 2 * QUEUE_CHUNK_SIZE);
	free(a.buf);
	free(data);
}

/* A head appended last is stored first: the head, then the content, cut
 * into whole chunks across both, for heads and contents that end before,
 * at and after a chunk edge. What a caller reads back of the content
 * before the commit (queue_msg_content_at) is what it appended. */
static void
test_content_head(void **state)
{
	struct qtest *t = *state;
	const size_t heads[] = { 0, 1, 300, QUEUE_CHUNK_SIZE + 7 };
	const size_t contents[] = { 0, 5, QUEUE_CHUNK_SIZE - 300,
	    QUEUE_CHUNK_SIZE, 2 * QUEUE_CHUNK_SIZE + 11 };

	for (size_t h = 0; h < sizeof(heads) / sizeof(*heads); h++) {
		for (size_t c = 0; c < sizeof(contents) / sizeof(*contents);
		    c++) {
			size_t hl = heads[h], cl = contents[c], off, piece = 1;
			char *want = malloc(hl + cl + 1);
			struct queue_msg_info env;
			struct queue_loaded_msg *l;
			struct queue_msg *m;
			struct content_acc a;
			uint64_t qid;

			for (size_t i = 0; i < hl; i++)
				want[i] = (char)('A' + i % 19);
			for (size_t i = 0; i < cl; i++)
				want[hl + i] = (char)('a' + i % 23);
			memset(&env, 0, sizeof(env));
			env.sender = "s@x.test";
			m = queue_msg_new(&env);
			queue_msg_add_rcpt(m, "r@x.test", NULL, 0);
			for (off = 0; off < cl; off += piece, piece = piece * 5 + 1)
				queue_msg_append(m, want + hl + off,
				    piece < cl - off ? piece : cl - off);
			/* Read back in place, chunk by chunk. */
			for (off = 0; off < cl;) {
				const void *p;
				size_t n = queue_msg_content_at(m, off, &p);

				assert_true(n > 0 && n <= cl - off);
				assert_memory_equal(p, want + hl + off, n);
				off += n;
			}
			{
				const void *p;

				assert_int_equal(queue_msg_content_at(m, cl, &p), 0);
			}
			/* The head in two calls. */
			queue_msg_append_head(m, want, hl / 2);
			queue_msg_append_head(m, want + hl / 2, hl - hl / 2);
			assert_true(queue_msg_size(m) == hl + cl);
			if (hl + cl == 0) {	/* nothing to store */
				queue_msg_free(m);
				free(want);
				continue;
			}
			qid = qtest_commit1(t->q, m);
			read_content(t->q, qid, &a);
			assert_int_equal(a.len, hl + cl);
			assert_memory_equal(a.buf, want, hl + cl);
			free(a.buf);
			assert_int_equal(queue_load(t->q, qid, &l), 0);
			assert_true(l->info.size == hl + cl);
			assert_int_equal(l->info.n_chunks, (hl + cl +
			    QUEUE_CHUNK_SIZE - 1) / QUEUE_CHUNK_SIZE);
			queue_loaded_free(l);
			free(want);
		}
	}
	assert_int_equal(qtest_check_invariants(t->q), 0);
}

/* A refused message drops its content and head. */
static void
test_content_drop(void **state)
{
	struct queue_msg_info env;
	struct queue_msg *m;
	const void *p;

	(void)state;
	memset(&env, 0, sizeof(env));
	env.sender = "s@x.test";
	m = queue_msg_new(&env);
	queue_msg_append(m, "hello", 5);
	queue_msg_append_head(m, "H: v\r\n", 6);
	assert_true(queue_msg_size(m) == 11);
	queue_msg_drop_content(m);
	assert_true(queue_msg_size(m) == 0);
	assert_int_equal(queue_msg_content_at(m, 0, &p), 0);
	queue_msg_append(m, "again", 5);
	assert_int_equal(queue_msg_content_at(m, 0, &p), 5);
	assert_memory_equal(p, "again", 5);
	queue_msg_free(m);
}

struct list_acc {
	uint64_t qids[64];
	size_t n;
	size_t rcpts;
};

static int
list_cb(void *arg, const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, size_t n)
{
	struct list_acc *a = arg;

	assert_true(a->n < 64);
	a->qids[a->n++] = m->qid;
	a->rcpts += n;
	assert_int_equal(n, m->n_rcpt);
	assert_true(r[0].qid == m->qid);
	return 0;
}

/* Listing is in arrival order, and queue ids stay ordered and unique
 * across a reopen. */
static void
test_list_order_and_reopen(void **state)
{
	struct qtest *t = *state;
	struct list_acc a;
	uint64_t first[5], later;
	size_t i;

	for (i = 0; i < 5; i++)
		first[i] = qtest_commit1(t->q, qtest_msg(i + 1, 10, "x.test"));
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_list(t->q, list_cb, &a), 0);
	assert_int_equal(a.n, 5);
	assert_int_equal(a.rcpts, 15);
	for (i = 0; i < 5; i++)
		assert_true(a.qids[i] == first[i]);
	queue_close(t->q);
	t->q = qtest_open_dir(t->dir, 4 * MB, 64 * MB, 0);
	assert_non_null(t->q);
	later = qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	assert_true(later > first[4]);
}

/* ---- schedule and the recipient state machine ---- */

struct sched_acc {
	struct queue_sched_entry e[32];
	size_t n;
};

static int
sched_cb(void *arg, const struct queue_sched_entry *e)
{
	struct sched_acc *a = arg;

	assert_true(a->n < 32);
	a->e[a->n++] = *e;
	return 0;
}

/* Claims everything due now and returns the claim. */
static struct queue_claim *
claim_all(struct queue *q, int64_t now, size_t max)
{
	struct queue_claim *c;

	assert_int_equal(queue_claim_due(q, now, max, &c), 0);
	return c;
}

static struct queue_result
result(uint64_t qid, uint32_t rcpt, uint8_t state, uint16_t code,
    int64_t next)
{
	struct queue_result r;

	memset(&r, 0, sizeof(r));
	r.qid = qid;
	r.rcpt = rcpt;
	r.state = state;
	r.attempted = true;
	r.time_ms = queue_now_ms();
	r.next_attempt_ms = next;
	r.code = code;
	r.status = code >= 500 ? "5.1.1" : code >= 400 ? "4.3.0" : "2.0.0";
	r.text = code >= 500 ? "no such user" : code >= 400 ? "try later" :
	    "ok";
	r.remote_host = "mx.x.test[192.0.2.5]:25";
	return r;
}

static void
apply1(struct queue *q, const struct queue_result *r, enum queue_err want)
{
	struct queue_update *u = queue_update_new(queue_now_ms());

	queue_update_result(u, r);
	assert_int_equal(queue_update_commit(q, u), 0);
	assert_int_equal(queue_update_status(u, 0), want);
	queue_update_free(u);
}

static void
test_schedule_order(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000, due;
	struct queue_claim *c;
	struct queue_result r;
	struct sched_acc a;
	uint64_t qid;
	size_t i;
	static const int64_t offs[4] = { 30000, 10000, 40000, 20000 };

	qid = qtest_commit1(t->q, qtest_msg(4, 10, "x.test"));
	c = claim_all(t->q, now + 1000, 100);
	assert_int_equal(c->n_msgs, 1);
	assert_int_equal(c->n_rcpts, 4);
	assert_true(c->msgs[0].info.qid == qid);
	assert_string_equal(c->msgs[0].info.sender, "sender@example.test");
	queue_claim_free(c);
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 0);
	assert_int_equal(qtest_count(t->q, QDB_ACTIVE), 4);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	for (i = 0; i < 4; i++) {
		r = result(qid, (uint32_t)i, QUEUE_RCPT_DEFERRED, 451,
		    now + offs[i]);
		apply1(t->q, &r, QUEUE_OK);
	}
	assert_int_equal(qtest_check_invariants(t->q), 0);
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_schedule_scan(t->q, INT64_MAX, 100, sched_cb,
	    &a), 0);
	assert_int_equal(a.n, 4);
	assert_int_equal(a.e[0].rcpt, 1);
	assert_int_equal(a.e[1].rcpt, 3);
	assert_int_equal(a.e[2].rcpt, 0);
	assert_int_equal(a.e[3].rcpt, 2);
	for (i = 1; i < 4; i++)
		assert_true(a.e[i - 1].due_ms < a.e[i].due_ms);
	assert_int_equal(queue_schedule_earliest(t->q, &due), 0);
	assert_true(due == now + 10000);
	/* Nothing is due before the earliest time; then only that one. */
	c = claim_all(t->q, now + 9999, 100);
	assert_int_equal(c->n_rcpts, 0);
	queue_claim_free(c);
	c = claim_all(t->q, now + 25000, 100);
	assert_int_equal(c->n_rcpts, 2);
	assert_int_equal(c->msgs[0].rcpts[0].index, 1);
	assert_int_equal(c->msgs[0].rcpts[1].index, 3);
	assert_int_equal(c->msgs[0].rcpts[0].state, QUEUE_RCPT_DEFERRED);
	assert_int_equal(c->msgs[0].rcpts[0].attempts, 1);
	assert_string_equal(c->msgs[0].rcpts[0].last_status, "4.3.0");
	queue_claim_free(c);
	/* The bound on a claim holds. */
	c = claim_all(t->q, now + 50000, 1);
	assert_int_equal(c->n_rcpts, 1);
	assert_int_equal(c->msgs[0].rcpts[0].index, 0);
	queue_claim_free(c);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	/* An empty schedule has no earliest time. */
	c = claim_all(t->q, now + 50000, 10);
	queue_claim_free(c);
	assert_int_equal(queue_schedule_earliest(t->q, &due), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_NOTFOUND);
}

/* Results and a claim in one transaction: the claim sees the results. */
static void
test_update_commit_claim(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000;
	struct queue_claim *c;
	struct queue_update *u;
	struct queue_result r;
	uint64_t a, b;

	a = qtest_commit1(t->q, qtest_msg(2, 10, "x.test"));
	c = claim_all(t->q, now, 100);
	assert_int_equal(c->n_rcpts, 2);
	queue_claim_free(c);
	b = qtest_commit1(t->q, qtest_msg(1, 10, "y.test"));
	u = queue_update_new(queue_now_ms());
	r = result(a, 0, QUEUE_RCPT_DELIVERED, 250, 0);
	queue_update_result(u, &r);
	r = result(a, 1, QUEUE_RCPT_DEFERRED, 451, now - 1);
	queue_update_result(u, &r);
	assert_int_equal(queue_update_commit_claim(t->q, u, now, 100, &c), 0);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 1), QUEUE_OK);
	/* b's recipient and a's deferred one, due again before now. */
	assert_int_equal(c->n_msgs, 2);
	assert_int_equal(c->n_rcpts, 2);
	assert_true(c->msgs[0].info.qid == b);
	assert_true(c->msgs[1].info.qid == a);
	assert_int_equal(c->msgs[1].rcpts[0].index, 1);
	assert_int_equal(c->msgs[1].rcpts[0].attempts, 1);
	queue_claim_free(c);
	queue_update_free(u);
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 0);
	assert_int_equal(qtest_count(t->q, QDB_ACTIVE), 2);
	assert_int_equal(qtest_check_invariants(t->q), 0);
}

struct ev_acc {
	uint8_t types[64];
	uint64_t seqs[64];
	size_t n;
};

static int
ev_cb(void *arg, const struct queue_event *e)
{
	struct ev_acc *a = arg;

	assert_true(a->n < 64);
	a->types[a->n] = e->type;
	a->seqs[a->n++] = e->seq;
	return 0;
}

static void
test_results_and_dsn(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000;	/* after every commit here */
	struct queue_claim *c;
	struct queue_result r;
	struct queue_update *u;
	struct queue_loaded_msg *l;
	struct ev_acc ev;
	uint64_t qid;

	qid = qtest_commit1(t->q, qtest_msg(3, 100, "x.test"));
	/* A result for a recipient not claimed is refused. */
	r = result(qid, 0, QUEUE_RCPT_DELIVERED, 250, 0);
	apply1(t->q, &r, QUEUE_ERR_STATE);
	c = claim_all(t->q, now + 10, 10);
	assert_int_equal(c->n_rcpts, 3);
	assert_true(queue_dsn_wanted(&c->msgs[0].info, &c->msgs[0].rcpts[1],
	    QUEUE_RF_DSN_FAILURE));
	assert_false(queue_dsn_wanted(&c->msgs[0].info, &c->msgs[0].rcpts[1],
	    QUEUE_RF_DSN_SUCCESS));
	queue_claim_free(c);

	/* Three results in one update: delivered, failed with a DSN to
	 * queue, deferred with a delay notice. */
	u = queue_update_new(now);
	r = result(qid, 0, QUEUE_RCPT_DELIVERED, 250, 0);
	queue_update_result(u, &r);
	r = result(qid, 1, QUEUE_RCPT_FAILED, 550, 0);
	r.dsn = QUEUE_RF_DSN_FAILURE;
	r.bounce_class = "bad-mailbox";
	queue_update_result(u, &r);
	r = result(qid, 2, QUEUE_RCPT_DEFERRED, 451, now + 60000);
	r.dsn = QUEUE_RF_DSN_DELAY;
	queue_update_result(u, &r);
	r = result(qid, 7, QUEUE_RCPT_DELIVERED, 250, 0);
	queue_update_result(u, &r);
	assert_int_equal(queue_update_count(u), 4);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 1), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 2), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 3), QUEUE_ERR_NOTFOUND);
	assert_false(queue_update_removed(u, 2));
	queue_update_free(u);
	assert_int_equal(qtest_check_invariants(t->q), 0);

	assert_int_equal(queue_load(t->q, qid, &l), 0);
	assert_int_equal(l->info.n_delivered, 1);
	assert_int_equal(l->info.n_failed, 1);
	assert_int_equal(l->info.n_dsn_pending, 2);
	assert_int_equal(l->rcpts[0].state, QUEUE_RCPT_DELIVERED);
	assert_int_equal(l->rcpts[0].flags, 0);
	assert_int_equal(l->rcpts[0].attempts, 1);
	assert_int_equal(l->rcpts[1].state, QUEUE_RCPT_FAILED);
	assert_int_equal(l->rcpts[1].flags,
	    QUEUE_RF_ACTIVE | QUEUE_RF_DSN_FAILURE);
	assert_string_equal(l->rcpts[1].bounce_class, "bad-mailbox");
	assert_int_equal(l->rcpts[1].last_code, 550);
	assert_string_equal(l->rcpts[1].last_host, "mx.x.test[192.0.2.5]:25");
	assert_int_equal(l->rcpts[2].state, QUEUE_RCPT_DEFERRED);
	assert_int_equal(l->rcpts[2].flags,
	    QUEUE_RF_DSN_DELAY | QUEUE_RF_DELAY_WARNED);
	assert_true(l->rcpts[2].next_attempt_ms == now + 60000);
	queue_loaded_free(l);

	/* DSNs queued: the failed one leaves the active set. */
	u = queue_update_new(now);
	queue_update_dsn_done(u, qid, 1, QUEUE_RF_DSN_FAILURE);
	queue_update_dsn_done(u, qid, 2, QUEUE_RF_DSN_DELAY);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 1), QUEUE_OK);
	queue_update_free(u);
	assert_int_equal(qtest_count(t->q, QDB_ACTIVE), 0);
	assert_int_equal(qtest_check_invariants(t->q), 0);

	/* The last recipient is delivered: the message is gone, with its
	 * content and recipients, in the same transaction. */
	c = claim_all(t->q, now + 60000, 10);
	assert_int_equal(c->n_rcpts, 1);
	assert_int_equal(c->msgs[0].rcpts[0].flags,
	    QUEUE_RF_ACTIVE | QUEUE_RF_DELAY_WARNED);
	queue_claim_free(c);
	u = queue_update_new(now);
	r = result(qid, 2, QUEUE_RCPT_DELIVERED, 250, 0);
	queue_update_result(u, &r);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	assert_true(queue_update_removed(u, 0));
	queue_update_free(u);
	assert_int_equal(queue_load(t->q, qid, &l), -1);
	assert_int_equal(qtest_count(t->q, QDB_MESSAGES), 0);
	assert_int_equal(qtest_count(t->q, QDB_RECIPIENTS), 0);
	assert_int_equal(qtest_count(t->q, QDB_CONTENT), 0);
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 0);
	assert_int_equal(qtest_count(t->q, QDB_ACTIVE), 0);

	/* The journey, in order, outlives the message. */
	memset(&ev, 0, sizeof(ev));
	assert_int_equal(queue_events_for(t->q, qid, ev_cb, &ev), 0);
	assert_int_equal(ev.n, 7);
	assert_int_equal(ev.types[0], QUEUE_EVENT_QUEUED);
	assert_int_equal(ev.types[3], QUEUE_EVENT_DELIVERED);
	assert_int_equal(ev.types[4], QUEUE_EVENT_BOUNCED);
	assert_int_equal(ev.types[5], QUEUE_EVENT_DEFERRED);
	assert_int_equal(ev.types[6], QUEUE_EVENT_DELIVERED);
}

static void
test_hold_release_delete_flush(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000;	/* after every commit here */
	struct queue_claim *c;
	struct queue_update *u;
	struct queue_result r;
	struct queue_loaded_msg *l;
	struct ev_acc ev;
	uint64_t a, b;
	size_t n;

	a = qtest_commit1(t->q, qtest_msg(2, 10, "x.test"));
	b = qtest_commit1(t->q, qtest_msg(2, 10, "y.test"));
	u = queue_update_new(now);
	queue_update_hold(u, a);
	queue_update_hold(u, a);		/* idempotent */
	queue_update_hold(u, 12345);		/* no such message */
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 1), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 2), QUEUE_ERR_NOTFOUND);
	queue_update_free(u);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	/* A held message is not claimed. */
	c = claim_all(t->q, now + 10, 10);
	assert_int_equal(c->n_msgs, 1);
	assert_true(c->msgs[0].info.qid == b);
	queue_claim_free(c);
	/* b's recipients: one deferred far away, one deferred soon. */
	r = result(b, 0, QUEUE_RCPT_DEFERRED, 421, now + 3600000);
	apply1(t->q, &r, QUEUE_OK);
	r = result(b, 1, QUEUE_RCPT_DEFERRED, 421, now + 7200000);
	apply1(t->q, &r, QUEUE_OK);
	/* Flush one message, then all: everything due now. */
	assert_int_equal(queue_flush(t->q, b, now + 20, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(queue_flush(t->q, 0, now + 20, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	assert_int_equal(queue_load(t->q, b, &l), 0);
	assert_true(l->rcpts[0].next_attempt_ms == now + 20);
	queue_loaded_free(l);
	c = claim_all(t->q, now + 30, 10);
	assert_int_equal(c->n_rcpts, 2);
	queue_claim_free(c);
	r = result(b, 0, QUEUE_RCPT_DEFERRED, 421, now + 3600000);
	apply1(t->q, &r, QUEUE_OK);
	assert_int_equal(queue_flush(t->q, 0, now + 40, &n), 0);
	assert_int_equal(n, 1);
	/* Release a: due now again; hold while a recipient is in flight
	 * keeps its result out of the schedule. */
	u = queue_update_new(now + 50);
	queue_update_release(u, a);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	queue_update_free(u);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	c = claim_all(t->q, now + 60, 10);
	assert_int_equal(c->n_rcpts, 3);
	queue_claim_free(c);
	u = queue_update_new(now + 70);
	queue_update_hold(u, a);
	r = result(a, 0, QUEUE_RCPT_DEFERRED, 451, now + 80);
	queue_update_result(u, &r);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 1), QUEUE_OK);
	queue_update_free(u);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	/* Delete a (one recipient still in flight) and b. */
	u = queue_update_new(now + 90);
	queue_update_delete(u, a);
	queue_update_delete(u, b);
	queue_update_delete(u, b);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_true(queue_update_removed(u, 0));
	assert_true(queue_update_removed(u, 1));
	assert_int_equal(queue_update_status(u, 2), QUEUE_ERR_NOTFOUND);
	queue_update_free(u);
	assert_int_equal(qtest_count(t->q, QDB_MESSAGES), 0);
	assert_int_equal(qtest_count(t->q, QDB_RECIPIENTS), 0);
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 0);
	assert_int_equal(qtest_count(t->q, QDB_ACTIVE), 0);
	assert_int_equal(qtest_count(t->q, QDB_CONTENT), 0);
	/* A late result for the deleted message is refused, not applied. */
	r = result(a, 1, QUEUE_RCPT_DELIVERED, 250, 0);
	apply1(t->q, &r, QUEUE_ERR_NOTFOUND);
	memset(&ev, 0, sizeof(ev));
	assert_int_equal(queue_events_for(t->q, a, ev_cb, &ev), 0);
	assert_int_equal(ev.types[ev.n - 1], QUEUE_EVENT_DELETED);
	assert_int_equal(ev.types[2], QUEUE_EVENT_HELD);
}

/* Recipients in flight when qmgr died are due again at the next start. */
static void
test_requeue_active(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000;	/* after every commit here */
	struct queue_claim *c;
	struct queue_update *u;
	struct queue_result r;
	uint64_t qid;
	size_t n;

	qid = qtest_commit1(t->q, qtest_msg(3, 10, "x.test"));
	c = claim_all(t->q, now + 10, 10);
	assert_int_equal(c->n_rcpts, 3);
	queue_claim_free(c);
	/* One result made it before the crash; one recipient failed with a
	 * DSN that was not queued yet. */
	r = result(qid, 0, QUEUE_RCPT_DELIVERED, 250, 0);
	apply1(t->q, &r, QUEUE_OK);
	r = result(qid, 1, QUEUE_RCPT_FAILED, 550, 0);
	r.dsn = QUEUE_RF_DSN_FAILURE;
	apply1(t->q, &r, QUEUE_OK);
	/* "Restart": reopen and requeue. */
	queue_close(t->q);
	t->q = qtest_open_dir(t->dir, 4 * MB, 64 * MB, 0);
	assert_int_equal(queue_requeue_active(t->q, now + 100, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(qtest_count(t->q, QDB_ACTIVE), 0);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	c = claim_all(t->q, now + 100, 10);
	assert_int_equal(c->n_rcpts, 2);
	assert_int_equal(c->msgs[0].rcpts[0].index, 1);
	assert_int_equal(c->msgs[0].rcpts[0].state, QUEUE_RCPT_FAILED);
	assert_int_equal(c->msgs[0].rcpts[0].flags,
	    QUEUE_RF_ACTIVE | QUEUE_RF_DSN_FAILURE);
	assert_int_equal(c->msgs[0].rcpts[1].index, 2);
	assert_int_equal(c->msgs[0].rcpts[1].state, QUEUE_RCPT_QUEUED);
	queue_claim_free(c);
	/* Unclaim gives one back without an attempt. */
	u = queue_update_new(now);
	queue_update_unclaim(u, qid, 2, now + 500);
	queue_update_unclaim(u, qid, 0, now + 500);	/* not claimed */
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	assert_int_equal(queue_update_status(u, 1), QUEUE_ERR_STATE);
	queue_update_free(u);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	c = claim_all(t->q, now + 499, 10);
	assert_int_equal(c->n_rcpts, 0);
	queue_claim_free(c);
	c = claim_all(t->q, now + 500, 10);
	assert_int_equal(c->n_rcpts, 1);
	assert_int_equal(c->msgs[0].rcpts[0].attempts, 0);
	queue_claim_free(c);
}

/* ---- suppression ---- */

struct supp_acc {
	char addrs[8][64];
	size_t n;
};

static int
supp_cb(void *arg, const struct queue_suppression *s)
{
	struct supp_acc *a = arg;

	assert_true(a->n < 8);
	snprintf(a->addrs[a->n++], 64, "%s", s->address);
	return 0;
}

static void
test_suppression(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000;	/* after every commit here */
	struct queue_suppression s;
	struct queue_supp_hit hits[4];
	const char *addrs[4] = { "Bad@Example.test", "ok@example.test",
	    "old@example.test", "" };
	struct supp_acc a;
	size_t n;

	memset(&s, 0, sizeof(s));
	s.address = "BAD@example.TEST";
	s.source = QUEUE_SUPP_BOUNCE;
	s.reason = "550 5.1.1 no such user";
	assert_int_equal(queue_suppress_add(t->q, &s), 0);
	s.address = "old@example.test";
	s.source = QUEUE_SUPP_COMPLAINT;
	s.reason = "abuse";
	s.expires_ms = now + 1000;
	assert_int_equal(queue_suppress_add(t->q, &s), 0);
	s.address = "man@example.test";
	s.source = QUEUE_SUPP_MANUAL;
	s.reason = "asked to stop";
	s.expires_ms = 0;
	assert_int_equal(queue_suppress_add(t->q, &s), 0);
	s.source = 0;
	assert_int_equal(queue_suppress_add(t->q, &s), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_INVALID);

	assert_int_equal(queue_suppress_check(t->q, addrs, 4, now, hits), 0);
	assert_true(hits[0].found);
	assert_int_equal(hits[0].source, QUEUE_SUPP_BOUNCE);
	assert_string_equal(hits[0].reason, "550 5.1.1 no such user");
	assert_false(hits[1].found);
	assert_true(hits[2].found);
	assert_true(hits[2].expires_ms == now + 1000);
	assert_false(hits[3].found);
	/* Expiry is respected. */
	assert_int_equal(queue_suppress_check(t->q, addrs, 4, now + 1000,
	    hits), 0);
	assert_true(hits[0].found);
	assert_false(hits[2].found);

	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_suppress_list(t->q, 0, NULL, now, supp_cb, &a),
	    0);
	assert_int_equal(a.n, 3);
	assert_string_equal(a.addrs[0], "bad@example.test");
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_suppress_list(t->q, QUEUE_SUPP_MANUAL, NULL, now,
	    supp_cb, &a), 0);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addrs[0], "man@example.test");
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_suppress_list(t->q, 0, "NO SUCH", now, supp_cb,
	    &a), 0);
	assert_int_equal(a.n, 1);
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_suppress_list(t->q, 0, NULL, now + 5000,
	    supp_cb, &a), 0);
	assert_int_equal(a.n, 2);

	assert_int_equal(queue_suppress_purge(t->q, now + 5000, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(qtest_count(t->q, QDB_SUPPRESSION), 2);
	assert_int_equal(queue_suppress_remove(t->q, "bad@EXAMPLE.test"), 0);
	assert_int_equal(queue_suppress_remove(t->q, "bad@example.test"), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_NOTFOUND);
	assert_int_equal(queue_suppress_check(t->q, addrs, 1, now, hits), 0);
	assert_false(hits[0].found);
}

/* ---- soft failures ---- */

static void
test_softfail_note(void **state)
{
	static struct queue_softfail list[QUEUE_SOFTFAIL_MAX];
	int64_t day = 86400000LL, now = 1000 * day, week = 7 * day;
	size_t n = 0;

	(void)state;
	assert_int_equal(queue_softfail_note(list, &n, 11, now - 3 * day, week),
	    1);
	/* The same message again counts once, with its newer time. */
	assert_int_equal(queue_softfail_note(list, &n, 11, now - 2 * day, week),
	    1);
	assert_true(list[0].time_ms == now - 2 * day);
	assert_int_equal(queue_softfail_note(list, &n, 12, now - day, week), 2);
	/* A retry of 11 moves it to the end: the list stays in time order. */
	assert_int_equal(queue_softfail_note(list, &n, 11, now - 3 * day / 4,
	    week), 2);
	assert_int_equal(list[0].qid, 12);
	assert_int_equal(list[1].qid, 11);
	assert_int_equal(queue_softfail_note(list, &n, 13, now, week), 3);
	/* Eight days on, 11 and 12 have left the window. */
	assert_int_equal(queue_softfail_note(list, &n, 14, now + 6 * day +
	    day / 2, week), 2);
	assert_int_equal(n, 2);
	assert_int_equal(list[0].qid, 13);
	/* A clock that stepped back does not keep the future alive. */
	assert_int_equal(queue_softfail_note(list, &n, 15, now - 10 * day,
	    week), 1);
	/* Full: the oldest goes. */
	n = 0;
	for (uint64_t q = 1; q <= QUEUE_SOFTFAIL_MAX + 5; q++)
		queue_softfail_note(list, &n, q, now + (int64_t)q, week);
	assert_int_equal(n, QUEUE_SOFTFAIL_MAX);
	assert_int_equal(list[0].qid, 6);
}

static int
soft_fail(struct queue *q, const char *address, uint64_t qid, int64_t now)
{
	struct queue_update *u = queue_update_new(now);
	struct queue_soft_failure f;
	int rc;

	memset(&f, 0, sizeof(f));
	f.address = address;
	f.qid = qid;
	f.limit = 3;
	f.window_ms = 7 * 86400000LL;
	f.expires_ms = now + 30 * 86400000LL;
	f.reason = "452 4.2.2 mailbox full";
	queue_update_soft_failure(u, &f);
	rc = queue_update_commit(q, u);
	if (rc == 0 && queue_update_status(u, 0) != QUEUE_OK)
		rc = -1;
	queue_update_free(u);
	return rc;
}

static void
test_soft_failures(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms();
	struct queue_softfail list[QUEUE_SOFTFAIL_MAX];
	struct queue_supp_hit hit;
	const char *addr = "Full@Example.test";
	size_t n;

	/* Two messages, one of them retried: two, not suppressed. */
	assert_int_equal(soft_fail(t->q, addr, 101, now), 0);
	assert_int_equal(soft_fail(t->q, addr, 101, now + 1000), 0);
	assert_int_equal(soft_fail(t->q, "full@example.TEST", 102, now + 2000),
	    0);
	assert_int_equal(queue_softfail_get(t->q, "full@example.test", list,
	    &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(queue_suppress_check(t->q, &addr, 1, now + 3000, &hit),
	    0);
	assert_false(hit.found);
	/* The third message reaches the limit: suppressed, count reset. */
	assert_int_equal(soft_fail(t->q, addr, 103, now + 3000), 0);
	assert_int_equal(queue_suppress_check(t->q, &addr, 1, now + 4000, &hit),
	    0);
	assert_true(hit.found);
	assert_int_equal(hit.source, QUEUE_SUPP_BOUNCE);
	assert_string_equal(hit.reason, "452 4.2.2 mailbox full");
	assert_true(hit.expires_ms == now + 3000 + 30 * 86400000LL);
	assert_int_equal(queue_softfail_get(t->q, addr, list, &n), 0);
	assert_int_equal(n, 0);
	/* Removing a suppression forgets the failures counted since. */
	assert_int_equal(soft_fail(t->q, addr, 104, now + 5000), 0);
	assert_int_equal(qtest_count(t->q, QDB_SOFTFAIL), 1);
	assert_int_equal(queue_suppress_remove(t->q, addr), 0);
	assert_int_equal(qtest_count(t->q, QDB_SOFTFAIL), 0);
	assert_int_equal(soft_fail(t->q, "", 105, now), -1);
	/* Lists with nothing left in the window are purged. */
	assert_int_equal(soft_fail(t->q, "old@example.test", 106, now), 0);
	assert_int_equal(soft_fail(t->q, "new@example.test", 107, now + 10000),
	    0);
	assert_int_equal(queue_softfail_purge(t->q, now + 5000, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(queue_softfail_get(t->q, "new@example.test", list,
	    &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(qtest_count(t->q, QDB_SOFTFAIL), 1);
}

/* A softfail record of count entries (qids 1, 2, ... at times t0,
 * t0 + 1, ...), with room for one entry more to read past its end. */
static uint8_t *
softfail_record(size_t count, int64_t t0)
{
	uint8_t *b = calloc(1, 3 + (count + 1) * 16);

	b[0] = QREC_VERSION;
	b[1] = (uint8_t)(count >> 8);
	b[2] = (uint8_t)count;
	for (size_t i = 0; i < count; i++) {
		uint64_t t = (uint64_t)(t0 + (int64_t)i);

		for (int k = 0; k < 8; k++) {
			b[3 + i * 16 + (size_t)k] = (uint8_t)(t >> (56 - 8 * k));
			b[3 + i * 16 + 8 + (size_t)k] = k == 7 ? (uint8_t)(i + 1) : 0;
		}
	}
	return b;
}

/* One decoder of the header serves the reader and the purge: short,
 * mislabelled or mis-sized records are refused by both. */
static void
test_softfail_malformed(void **state)
{
	struct qtest *t = *state;
	static struct queue_softfail list[QUEUE_SOFTFAIL_MAX + 1];
	int64_t now = 5000000;
	uint8_t *b;
	size_t n;

	b = softfail_record(2, now);
	assert_int_equal(qrec_decode_softfail(b, 3 + 2 * 16, list, &n), 0);
	assert_int_equal(n, 2);
	assert_true(list[1].time_ms == now + 1);
	assert_int_equal(list[1].qid, 2);
	assert_false(qsoftfail_is_stale(b, 3 + 2 * 16, now + 1));
	assert_true(qsoftfail_is_stale(b, 3 + 2 * 16, now + 2));
	/* Shorter than the header, or than its count says; longer. */
	for (size_t len = 0; len < 3 + 2 * 16 + 2; len++) {
		if (len == 3 + 2 * 16)
			continue;
		n = 99;
		assert_int_equal(qrec_decode_softfail(b, len, list, &n), -1);
		assert_int_equal(n, 0);
		assert_true(qsoftfail_is_stale(b, len, 0));
	}
	/* Another version. */
	b[0] = QREC_VERSION + 1;
	assert_int_equal(qrec_decode_softfail(b, 3 + 2 * 16, list, &n), -1);
	assert_true(qsoftfail_is_stale(b, 3 + 2 * 16, 0));
	free(b);
	/* More entries than a list may hold, even with the bytes for them. */
	b = softfail_record(QUEUE_SOFTFAIL_MAX + 1, now);
	assert_int_equal(qrec_decode_softfail(b, 3 + (QUEUE_SOFTFAIL_MAX + 1) *
	    16, list, &n), -1);
	assert_true(qsoftfail_is_stale(b, 3 + (QUEUE_SOFTFAIL_MAX + 1) * 16, 0));
	free(b);
	/* A negative time is refused by the reader. */
	b = softfail_record(1, -5);
	assert_int_equal(qrec_decode_softfail(b, 3 + 16, list, &n), -1);
	free(b);

	/* In the store: a short record is corrupt to a reader, counted from
	 * zero by the next soft failure, and purged whatever the time. */
	qtest_raw_put(t->q, QDB_SOFTFAIL, "short@example.test", 18, "\1\0", 2);
	qtest_raw_put(t->q, QDB_SOFTFAIL, "cut@example.test", 16, "\1\0\2\0",
	    4);
	assert_int_equal(queue_softfail_get(t->q, "short@example.test", list,
	    &n), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_CORRUPT);
	assert_int_equal(soft_fail(t->q, "short@example.test", 201, now), 0);
	assert_int_equal(queue_softfail_get(t->q, "short@example.test", list,
	    &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0].qid, 201);
	assert_int_equal(queue_softfail_purge(t->q, 0, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(qtest_count(t->q, QDB_SOFTFAIL), 1);
	assert_int_equal(queue_softfail_get(t->q, "cut@example.test", list, &n),
	    0);
	assert_int_equal(n, 0);
}

/* Sends stderr (the log) to a file until stderr_end() (call it before
 * any assertion, which would leave stderr there). */
static int
stderr_begin(char *path)
{
	int saved, fd;

	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = mkstemp(path);
	assert_true(saved != -1 && fd != -1);
	dup2(fd, STDERR_FILENO);
	close(fd);
	return saved;
}

/* Restores stderr; how often needle was logged meanwhile. */
static int
stderr_end(int saved, const char *path, const char *needle)
{
	char buf[65536];
	const char *p = buf;
	ssize_t len;
	int fd, n = 0;

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	fd = open(path, O_RDONLY);
	assert_true(fd != -1);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(path);
	assert_true(len >= 0);
	buf[len] = '\0';
	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	return n;
}

/* The soft failure that suppresses is logged once, after the commit,
 * even when its transaction ran twice because the map had to grow. */
static void
test_softfail_logged_after_commit(void **state)
{
	struct qtest *t = qtest_new(1 * MB, 64 * MB);
	static const char needle[] = "suppressed <full@example.test>: 3 "
	    "different messages soft-bounced";
	int64_t now = queue_now_ms();
	char path[] = "/tmp/test_queue_store.log.XXXXXX";
	char *text = malloc(QUEUE_TEXT_MAX + 1);
	struct queue_soft_failure f;
	struct queue_stats st;
	struct queue_supp_hit hit;
	const char *addr = "full@example.test";
	struct queue_update *u;
	struct queue_event e;
	int saved, rc, logged;

	(void)state;
	memset(text, 'x', QUEUE_TEXT_MAX);
	text[QUEUE_TEXT_MAX] = '\0';
	assert_int_equal(soft_fail(t->q, addr, 301, now), 0);
	assert_int_equal(soft_fail(t->q, addr, 302, now + 1), 0);
	/* The third failure, then more events than the 1 MB map holds. */
	u = queue_update_new(now + 2);
	memset(&f, 0, sizeof(f));
	f.address = addr;
	f.qid = 303;
	f.limit = 3;
	f.window_ms = 86400000LL;
	f.reason = "452 4.2.2 mailbox full";
	queue_update_soft_failure(u, &f);
	for (int i = 0; i < 400; i++) {
		memset(&e, 0, sizeof(e));
		e.type = QUEUE_EVENT_COMPLAINT;
		e.qid = 303;
		e.recipient = addr;
		e.text = text;
		queue_update_event(u, &e);
	}
	saved = stderr_begin(path);
	rc = queue_update_commit(t->q, u);
	logged = stderr_end(saved, path, needle);
	assert_int_equal(rc, 0);
	assert_int_equal(logged, 1);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	queue_update_free(u);
	queue_get_stats(t->q, &st);
	assert_true(st.map_size > 1 * MB);
	assert_int_equal(queue_suppress_check(t->q, &addr, 1, now + 3, &hit), 0);
	assert_true(hit.found);
	free(text);
	qtest_free(t);
}

/* Bytes of the map not yet handed out to pages (free pages aside). */
static uint64_t
map_unused(struct queue *q)
{
	MDB_envinfo info;
	MDB_stat st;

	assert_int_equal(mdb_env_info(q->env, &info), 0);
	assert_int_equal(mdb_env_stat(q->env, &st), 0);
	return (uint64_t)info.me_mapsize -
	    ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

/* A queue whose map cannot grow, left with less than 400 KB: one claimed
 * message (*qid) and 50 addresses (addr) with long soft-failure lists,
 * so that counting each once more rewrites 16 KB, 800 KB in all. */
static struct qtest *
softfail_full_queue(int64_t now, char addr[50][32], uint64_t *qid)
{
	struct qtest *t = qtest_new(4 * MB, 4 * MB);
	struct queue_claim *c;
	uint8_t *rec;

	rec = softfail_record(QUEUE_SOFTFAIL_MAX - 1, now - 100000);
	for (int i = 0; i < 50; i++) {
		snprintf(addr[i], 32, "full%02d@example.test", i);
		qtest_raw_put(t->q, QDB_SOFTFAIL, addr[i], strlen(addr[i]), rec,
		    3 + (QUEUE_SOFTFAIL_MAX - 1) * 16);
	}
	free(rec);
	*qid = qtest_commit1(t->q, qtest_msg(1, 100, "x.test"));
	c = claim_all(t->q, now + 10, 10);
	assert_int_equal(c->n_rcpts, 1);
	queue_claim_free(c);
	/* Fill the map until less than 400 KB is left: room for a result,
	 * not for the counts. */
	while (map_unused(t->q) >= 400 * 1024)
		qtest_commit1(t->q, qtest_msg(1, 100 * 1024, "x.test"));
	return t;
}

/* Counts one soft failure of qid for each of the 50 addresses. */
static void
update_soft_failures(struct queue_update *u, char addr[50][32], uint64_t qid)
{
	struct queue_soft_failure f;

	for (int i = 0; i < 50; i++) {
		memset(&f, 0, sizeof(f));
		f.address = addr[i];
		f.qid = qid;
		f.limit = 2 * QUEUE_SOFTFAIL_MAX;	/* count only */
		f.window_ms = 86400000LL;
		f.reason = "452 4.2.2 mailbox full";
		queue_update_soft_failure(u, &f);
	}
}

/* A full queue takes a delivery result without the soft-bounce counts
 * that came with it: the counts are lost, the result is not. */
static void
test_softfail_queue_full(void **state)
{
	int64_t now = queue_now_ms() + 60000;
	static struct queue_softfail list[QUEUE_SOFTFAIL_MAX];
	char path[] = "/tmp/test_queue_store.log.XXXXXX";	/* mkstemp */
	struct queue_loaded_msg *l;
	struct queue_result r;
	struct queue_update *u;
	char addr[50][32];
	uint64_t qid;
	size_t n;
	int saved, rc, logged;
	struct qtest *t = softfail_full_queue(now, addr, &qid);

	(void)state;
	u = queue_update_new(now);
	r = result(qid, 0, QUEUE_RCPT_DEFERRED, 452, now + 60000);
	r.status = "4.2.2";
	r.text = "mailbox full";
	queue_update_result(u, &r);
	update_soft_failures(u, addr, qid);
	saved = stderr_begin(path);
	rc = queue_update_commit(t->q, u);
	logged = stderr_end(saved, path, "not counted: queue map full");
	assert_int_equal(rc, 0);
	assert_int_equal(logged, 50);
	assert_int_equal(queue_update_status(u, 0), QUEUE_OK);
	for (size_t i = 1; i <= 50; i++)
		assert_int_equal(queue_update_status(u, i), QUEUE_ERR_FULL);
	queue_update_free(u);
	/* The result is in: deferred, due again as it said. */
	assert_int_equal(queue_load(t->q, qid, &l), 0);
	assert_int_equal(l->rcpts[0].state, QUEUE_RCPT_DEFERRED);
	assert_int_equal(l->rcpts[0].last_code, 452);
	assert_int_equal(l->rcpts[0].attempts, 1);
	assert_true(l->rcpts[0].next_attempt_ms == now + 60000);
	queue_loaded_free(l);
	/* The counts are as they were. */
	assert_int_equal(queue_softfail_get(t->q, addr[0], list, &n), 0);
	assert_int_equal(n, QUEUE_SOFTFAIL_MAX - 1);
	assert_int_not_equal(list[n - 1].qid, qid);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	qtest_free(t);
}

/* When even the results do not fit without the counts, nothing is
 * committed: every operation carries the error, the recipient stays as
 * it was claimed, and no count is said to be dropped. */
static void
test_softfail_queue_full_results_too(void **state)
{
	int64_t now = queue_now_ms() + 60000;
	char path[] = "/tmp/test_queue_store.log.XXXXXX";	/* mkstemp */
	char *text = malloc(QUEUE_TEXT_MAX + 1);
	struct queue_loaded_msg *l;
	struct queue_result r;
	struct queue_update *u;
	struct queue_event e;
	char addr[50][32];
	uint64_t qid;
	int saved, rc, logged;
	struct qtest *t = softfail_full_queue(now, addr, &qid);

	(void)state;
	memset(text, 'x', QUEUE_TEXT_MAX);
	text[QUEUE_TEXT_MAX] = '\0';
	u = queue_update_new(now);
	r = result(qid, 0, QUEUE_RCPT_DEFERRED, 452, now + 60000);
	queue_update_result(u, &r);
	update_soft_failures(u, addr, qid);
	/* 800 KB of events: more than the room left, counts or not. */
	for (int i = 0; i < 200; i++) {
		memset(&e, 0, sizeof(e));
		e.type = QUEUE_EVENT_COMPLAINT;
		e.qid = qid;
		e.recipient = addr[0];
		e.text = text;
		queue_update_event(u, &e);
	}
	saved = stderr_begin(path);
	rc = queue_update_commit(t->q, u);
	logged = stderr_end(saved, path, "not counted");
	assert_int_equal(rc, -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_FULL);
	assert_int_equal(logged, 0);
	for (size_t i = 0; i < queue_update_count(u); i++)
		assert_int_equal(queue_update_status(u, i), QUEUE_ERR_FULL);
	queue_update_free(u);
	assert_int_equal(queue_load(t->q, qid, &l), 0);
	assert_int_equal(l->rcpts[0].attempts, 0);
	assert_int_not_equal(l->rcpts[0].state, QUEUE_RCPT_DEFERRED);
	queue_loaded_free(l);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	free(text);
	qtest_free(t);
}

/* ---- events ---- */

static void
test_events_retention(void **state)
{
	struct qtest *t = *state;
	struct queue_update *u;
	struct queue_event e;
	struct ev_acc acc;
	uint64_t next, last;
	size_t n, i;

	/* 30 events, one a second from t = 1000 s. */
	u = queue_update_new(0);
	for (i = 0; i < 30; i++) {
		memset(&e, 0, sizeof(e));
		e.time_ms = (int64_t)(1000 + i) * 1000;
		e.type = QUEUE_EVENT_COMPLAINT;
		e.qid = 1 + i % 3;
		e.recipient = "c@x.test";
		queue_update_event(u, &e);
	}
	e.type = 99;
	queue_update_event(u, &e);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	assert_int_equal(queue_update_status(u, 30), QUEUE_ERR_INVALID);
	queue_update_free(u);

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(queue_events_read(t->q, 0, 10, ev_cb, &acc, &next), 0);
	assert_int_equal(acc.n, 10);
	assert_true(acc.seqs[0] == 1 && acc.seqs[9] == 10);
	assert_true(next == 11);
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(queue_events_read(t->q, next, 100, ev_cb, &acc,
	    &next), 0);
	assert_int_equal(acc.n, 20);
	assert_true(next == 31);
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(queue_events_for(t->q, 2, ev_cb, &acc), 0);
	assert_int_equal(acc.n, 10);

	/* Retention: everything before t = 1020 s goes, with its index. */
	assert_int_equal(queue_events_purge(t->q, 1020 * 1000, &n), 0);
	assert_int_equal(n, 20);
	assert_int_equal(qtest_count(t->q, QDB_EVENTS), 10);
	assert_int_equal(qtest_count(t->q, QDB_EVENT_INDEX), 10);
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(queue_events_read(t->q, 0, 100, ev_cb, &acc, &next), 0);
	assert_int_equal(acc.n, 10);
	assert_true(acc.seqs[0] == 21);
	/* Purging all does not make numbers restart. */
	assert_int_equal(queue_events_purge(t->q, INT64_MAX, &n), 0);
	assert_int_equal(n, 10);
	last = acc.seqs[9];
	qtest_commit1(t->q, qtest_msg(1, 1, "x.test"));
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(queue_events_read(t->q, 0, 100, ev_cb, &acc, &next), 0);
	assert_int_equal(acc.n, 1);
	assert_true(acc.seqs[0] == last + 1);
}

/* ---- resilience ---- */

/* The map grows when full, up to the bound; then commits are refused
 * with QUEUE_ERR_FULL (452 4.3.1), nothing is lost, and deleting mail
 * makes room again. */
static void
test_map_full(void **state)
{
	struct qtest *t = qtest_new(1 * MB, 4 * MB);
	struct queue_stats st;
	struct queue_batch *b;
	uint64_t qids[64];
	size_t n = 0, i;
	unsigned code;
	const char *status;
	struct queue_update *u;

	(void)state;
	for (i = 0; i < 64; i++) {
		b = queue_batch_new();
		queue_batch_add(b, qtest_msg(1, 200 * 1024, "x.test"));
		if (queue_batch_commit(t->q, b) == -1) {
			assert_int_equal(queue_last_error(), QUEUE_ERR_FULL);
			assert_int_equal(queue_batch_status(b, 0),
			    QUEUE_ERR_FULL);
			queue_batch_free(b);
			break;
		}
		qids[n++] = queue_batch_qid(b, 0);
		queue_batch_free(b);
	}
	assert_true(i < 64);
	queue_get_stats(t->q, &st);
	assert_true(st.map_grows >= 2);
	assert_true(st.map_size == 4 * MB);
	assert_true(n >= 10);
	queue_err_smtp(QUEUE_ERR_FULL, &code, &status);
	assert_int_equal(code, 452);
	assert_string_equal(status, "4.3.1");
	/* What was committed is intact. */
	assert_int_equal(qtest_count(t->q, QDB_MESSAGES), n);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	/* Room again after deleting. */
	u = queue_update_new(queue_now_ms());
	for (i = 0; i < n / 2; i++)
		queue_update_delete(u, qids[i]);
	assert_int_equal(queue_update_commit(t->q, u), 0);
	queue_update_free(u);
	/* LMDB reuses the pages a commit freed only after the next commit
	 * (the previous snapshot must stay intact): one small commit, then
	 * the big message fits again. */
	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	qtest_commit1(t->q, qtest_msg(1, 200 * 1024, "x.test"));
	/* A reopen never shrinks the grown map. */
	queue_close(t->q);
	t->q = qtest_open_dir(t->dir, 1 * MB, 4 * MB, 0);
	queue_get_stats(t->q, &st);
	assert_true(st.map_size == 4 * MB);
	qtest_free(t);
}

/* Another process grows the map: this one adopts the new size at its
 * next transaction (MDB_MAP_RESIZED). LMDB forbids two handles on one
 * environment in a process, so the other writer is a child. */
static void
test_map_resized_elsewhere(void **state)
{
	struct qtest *t = qtest_new(1 * MB, 32 * MB);
	struct queue_stats st;
	struct list_acc a;
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct queue *q = qtest_open_dir(t->dir, 1 * MB, 32 * MB, 0);
		struct queue_stats cst;
		int i;

		if (q == NULL)
			_exit(2);
		for (i = 0; i < 20; i++)
			qtest_commit1(q, qtest_msg(1, 200 * 1024, "x.test"));
		queue_get_stats(q, &cst);
		_exit(cst.map_grows > 0 ? 0 : 3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	queue_get_stats(t->q, &st);
	assert_true(st.map_size == 1 * MB);
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_list(t->q, list_cb, &a), 0);
	assert_int_equal(a.n, 20);
	queue_get_stats(t->q, &st);
	assert_true(st.map_size > 1 * MB);
	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	qtest_free(t);
}

/* LMDB fails to write a meta page: the environment is unusable (MDB_PANIC)
 * and says so; a new open finds the last good state. */
static void
test_meta_write_panic(void **state)
{
	struct qtest *t = *state;
	struct queue_batch *b;
	struct list_acc a;

	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	atomic_store(&qtest_dsync_write_errno, EIO);
	b = queue_batch_new();
	queue_batch_add(b, qtest_msg(1, 10, "x.test"));
	assert_int_equal(queue_batch_commit(t->q, b), -1);
	assert_int_equal(queue_batch_status(b, 0), QUEUE_ERR_IO);
	queue_batch_free(b);
	atomic_store(&qtest_dsync_write_errno, 0);
	b = queue_batch_new();
	queue_batch_add(b, qtest_msg(1, 10, "x.test"));
	assert_int_equal(queue_batch_commit(t->q, b), -1);
	assert_int_equal(queue_batch_status(b, 0), QUEUE_ERR_IO);
	queue_batch_free(b);
	assert_true(queue_is_broken(t->q));
	queue_close(t->q);
	t->q = qtest_open_dir(t->dir, 4 * MB, 64 * MB, 0);
	assert_non_null(t->q);
	assert_false(queue_is_broken(t->q));
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_list(t->q, list_cb, &a), 0);
	assert_int_equal(a.n, 1);
	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	assert_int_equal(qtest_check_invariants(t->q), 0);
}

/* The test-only switch: no data sync at all (the negative control). */
static void
test_unsafe_nosync(void **state)
{
	struct qtest *t = *state;
	struct queue *q;
	long before;
	char dir[300];

	snprintf(dir, sizeof(dir), "%s/nosync", t->dir);
	setenv("TERN_QUEUE_UNSAFE_NOSYNC", "1", 1);
	q = qtest_open_dir(dir, 4 * MB, 64 * MB, 0);
	unsetenv("TERN_QUEUE_UNSAFE_NOSYNC");
	assert_non_null(q);
	before = atomic_load(&qtest_sync_count);
	qtest_commit1(q, qtest_msg(1, 10, "x.test"));
	qtest_commit1(q, qtest_msg(1, 10, "x.test"));
	assert_int_equal(atomic_load(&qtest_sync_count), before);
	queue_close(q);
	/* Without it, each commit syncs. */
	before = atomic_load(&qtest_sync_count);
	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	assert_int_equal(atomic_load(&qtest_sync_count), before + 1);
}

/* EIO or ENOSPC from the sync of a commit: a distinct error, nothing
 * reported as committed, nothing visible; the next commit works. */
static void
test_disk_errors(void **state)
{
	struct qtest *t = *state;
	struct queue_batch *b;
	struct list_acc a;
	unsigned code;
	const char *status;
	long before;

	before = atomic_load(&qtest_sync_count);
	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	assert_true(atomic_load(&qtest_sync_count) > before);

	atomic_store(&qtest_sync_errno, EIO);
	b = queue_batch_new();
	queue_batch_add(b, qtest_msg(2, 100, "x.test"));
	queue_batch_add(b, qtest_msg(1, 100, "x.test"));
	assert_int_equal(queue_batch_commit(t->q, b), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_IO);
	assert_int_equal(queue_batch_status(b, 0), QUEUE_ERR_IO);
	assert_int_equal(queue_batch_status(b, 1), QUEUE_ERR_IO);
	queue_batch_free(b);
	queue_err_smtp(QUEUE_ERR_IO, &code, &status);
	assert_int_equal(code, 451);
	assert_string_equal(status, "4.3.0");

	atomic_store(&qtest_sync_errno, ENOSPC);
	b = queue_batch_new();
	queue_batch_add(b, qtest_msg(1, 100, "x.test"));
	assert_int_equal(queue_batch_commit(t->q, b), -1);
	assert_int_equal(queue_batch_status(b, 0), QUEUE_ERR_NOSPACE);
	queue_batch_free(b);
	queue_err_smtp(QUEUE_ERR_NOSPACE, &code, &status);
	assert_int_equal(code, 452);
	atomic_store(&qtest_sync_errno, 0);

	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_list(t->q, list_cb, &a), 0);
	assert_int_equal(a.n, 1);
	assert_false(queue_is_broken(t->q));
	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	/* Also after a reopen, only what was committed is there. */
	queue_close(t->q);
	t->q = qtest_open_dir(t->dir, 4 * MB, 64 * MB, 0);
	memset(&a, 0, sizeof(a));
	assert_int_equal(queue_list(t->q, list_cb, &a), 0);
	assert_int_equal(a.n, 2);
	assert_int_equal(qtest_check_invariants(t->q), 0);
}

struct quar_acc {
	char dbs[16][16];
	size_t n;
};

static int
quar_cb(void *arg, const struct queue_quarantined *r)
{
	struct quar_acc *a = arg;

	if (a->n < 16)
		snprintf(a->dbs[a->n], 16, "%s", r->db);
	a->n++;
	return 0;
}

/* A corrupt recipient is moved aside and counted as failed; the other
 * recipients go on; the next claim does not see it again. */
static void
test_corrupt_rcpt(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000;	/* after every commit here */
	uint8_t k[QKEY_RCPT_LEN];
	struct queue_claim *c;
	struct queue_loaded_msg *l;
	struct queue_stats st;
	struct quar_acc qa;
	struct list_acc la;
	uint64_t qid;

	qid = qtest_commit1(t->q, qtest_msg(3, 10, "x.test"));
	qkey_rcpt(k, qid, 1);
	qtest_raw_put(t->q, QDB_RECIPIENTS, k, sizeof(k), "\1garbage", 8);
	/* Readers skip it without writing. */
	memset(&la, 0, sizeof(la));
	assert_int_equal(queue_load(t->q, qid, &l), 0);
	assert_int_equal(l->n_rcpts, 2);
	queue_loaded_free(l);
	c = claim_all(t->q, now + 10, 10);
	assert_int_equal(c->n_rcpts, 2);
	assert_int_equal(c->msgs[0].rcpts[0].index, 0);
	assert_int_equal(c->msgs[0].rcpts[1].index, 2);
	assert_int_equal(c->msgs[0].info.n_failed, 0);
	queue_claim_free(c);
	queue_get_stats(t->q, &st);
	assert_true(st.quarantined == 1);
	memset(&qa, 0, sizeof(qa));
	assert_int_equal(queue_quarantine_list(t->q, quar_cb, &qa), 0);
	assert_int_equal(qa.n, 1);
	assert_string_equal(qa.dbs[0], "recipients");
	assert_int_equal(queue_load(t->q, qid, &l), 0);
	assert_int_equal(l->info.n_failed, 1);
	queue_loaded_free(l);
	c = claim_all(t->q, now + 20, 10);
	assert_int_equal(c->n_rcpts, 0);
	queue_claim_free(c);
	assert_int_equal(qtest_check_invariants(t->q), 0);
}

/* A corrupt message record, or missing content: the whole message goes
 * to quarantine; a bad schedule entry alone goes too; nothing loops. */
static void
test_corrupt_message(void **state)
{
	struct qtest *t = *state;
	int64_t now = queue_now_ms() + 60000;	/* after every commit here */
	uint8_t k[QKEY_SCHED_LEN], ck[QKEY_RCPT_LEN];
	struct queue_claim *c;
	struct queue_loaded_msg *l;
	struct quar_acc qa;
	struct list_acc la;
	struct ev_acc ev;
	uint64_t a, b, ok;
	size_t i, n_rec = 0, n_msg = 0, n_content = 0, n_sched = 0;

	a = qtest_commit1(t->q, qtest_msg(2, 10, "x.test"));
	b = qtest_commit1(t->q, qtest_msg(1, 2 * QUEUE_CHUNK_SIZE, "x.test"));
	ok = qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	qkey_msg(k, a);
	qtest_raw_put(t->q, QDB_MESSAGES, k, QKEY_MSG_LEN, "\7", 1);
	qkey_rcpt(ck, b, 1);
	qtest_raw_put(t->q, QDB_CONTENT, ck, sizeof(ck), NULL, 0);
	qtest_raw_put(t->q, QDB_SCHEDULE, "short", 5, "\1", 1);
	/* The listing (a reader) skips the corrupt record. */
	memset(&la, 0, sizeof(la));
	assert_int_equal(queue_list(t->q, list_cb, &la), 0);
	assert_int_equal(la.n, 2);
	assert_int_equal(queue_load(t->q, a, &l), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_CORRUPT);

	c = claim_all(t->q, now + 10, 10);
	assert_int_equal(c->n_msgs, 1);
	assert_true(c->msgs[0].info.qid == ok);
	queue_claim_free(c);
	memset(&qa, 0, sizeof(qa));
	assert_int_equal(queue_quarantine_list(t->q, quar_cb, &qa), 0);
	for (i = 0; i < qa.n; i++) {
		n_msg += strcmp(qa.dbs[i], "messages") == 0;
		n_rec += strcmp(qa.dbs[i], "recipients") == 0;
		n_content += strcmp(qa.dbs[i], "content") == 0;
		n_sched += strcmp(qa.dbs[i], "schedule") == 0;
	}
	assert_int_equal(n_msg, 2);
	assert_int_equal(n_rec, 3);
	assert_int_equal(n_content, 2);	/* a: 1 chunk, b: 1 of 2 left */
	assert_int_equal(n_sched, 1);
	assert_int_equal(queue_load(t->q, a, &l), -1);
	assert_int_equal(queue_last_error(), QUEUE_ERR_NOTFOUND);
	assert_int_equal(queue_load(t->q, b, &l), -1);
	memset(&ev, 0, sizeof(ev));
	assert_int_equal(queue_events_for(t->q, b, ev_cb, &ev), 0);
	assert_int_equal(ev.types[ev.n - 1], QUEUE_EVENT_QUARANTINED);
	/* Nothing comes back: no loop. */
	c = claim_all(t->q, now + 20, 10);
	assert_int_equal(c->n_rcpts, 0);
	queue_claim_free(c);
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 0);
	assert_int_equal(qtest_count(t->q, QDB_MESSAGES), 1);
	assert_int_equal(qtest_check_invariants(t->q), 0);
}

static int
killing_list_cb(void *arg, const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, size_t n)
{
	(void)arg;
	(void)m;
	(void)r;
	(void)n;
	raise(SIGKILL);
	return 0;
}

/* A reader killed inside its read transaction leaves a slot behind;
 * queue_reader_check() (and every open) clears it. */
static void
test_reader_check(void **state)
{
	struct qtest *t = *state;
	int status, cleared = -1;
	pid_t pid;

	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child opens its own environment, never the parent's. */
		struct queue *q = qtest_open_dir(t->dir, 4 * MB, 64 * MB,
		    QUEUE_OPEN_READONLY);

		if (q != NULL)
			queue_list(q, killing_list_cb, NULL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(queue_reader_check(t->q, &cleared), 0);
	assert_int_equal(cleared, 1);
	assert_int_equal(queue_reader_check(t->q, &cleared), 0);
	assert_int_equal(cleared, 0);
}

/* A read-only handle (another process, as tern-smtp) reads but never
 * writes; before any writer created the store it cannot open. */
static void
test_readonly(void **state)
{
	struct qtest *t = *state;
	char dir[300];
	int status;
	pid_t pid;

	snprintf(dir, sizeof(dir), "%s/empty", t->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_null(qtest_open_dir(dir, 4 * MB, 64 * MB, QUEUE_OPEN_READONLY));
	assert_int_equal(queue_last_error(), QUEUE_ERR_NOTFOUND);
	qtest_commit1(t->q, qtest_msg(1, 10, "x.test"));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct queue *ro = qtest_open_dir(t->dir, 4 * MB, 64 * MB,
		    QUEUE_OPEN_READONLY);
		struct queue_claim *c;
		struct list_acc a;

		memset(&a, 0, sizeof(a));
		if (ro == NULL || queue_list(ro, list_cb, &a) == -1 || a.n != 1)
			_exit(2);
		if (queue_claim_due(ro, INT64_MAX, 10, &c) != -1 ||
		    queue_last_error() != QUEUE_ERR_INVALID || c != NULL)
			_exit(3);
		queue_close(ro);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The writer sees the store unchanged. */
	assert_int_equal(qtest_count(t->q, QDB_ACTIVE), 0);
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_batch_roundtrip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_content_pieces, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_content_head, setup,
		    teardown),
		cmocka_unit_test(test_content_drop),
		cmocka_unit_test_setup_teardown(test_list_order_and_reopen,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_schedule_order, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_update_commit_claim, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_results_and_dsn, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hold_release_delete_flush,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_requeue_active, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_suppression, setup,
		    teardown),
		cmocka_unit_test(test_softfail_note),
		cmocka_unit_test_setup_teardown(test_softfail_malformed, setup,
		    teardown),
		cmocka_unit_test(test_softfail_logged_after_commit),
		cmocka_unit_test(test_softfail_queue_full),
		cmocka_unit_test(test_softfail_queue_full_results_too),
		cmocka_unit_test_setup_teardown(test_soft_failures, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_events_retention, setup,
		    teardown),
		cmocka_unit_test(test_map_full),
		cmocka_unit_test(test_map_resized_elsewhere),
		cmocka_unit_test_setup_teardown(test_meta_write_panic, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_nosync, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_disk_errors, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_rcpt, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_message, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_reader_check, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
	};

	log_init("test_queue", LOG_TARGET_STDERR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
