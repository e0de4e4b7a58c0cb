/*
 * test_queue_commit.c - unit tests for group commit: N threads submit
 * concurrently through one committer; every message is committed and
 * answered only after its commit; there are fewer commits than messages;
 * and there is one data sync per commit, counted twice: by this
 * executable's fdatasync (which liblmdb calls) and, independently, by
 * strace on a child process that runs the same workload.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <pthread.h>
#include <sys/wait.h>

#include "log.h"
#include "qtest.h"

#define MB (1024 * 1024)
#define THREADS 8
#define PER_THREAD 40

struct worker {
	struct queue_committer *c;
	uint64_t qids[PER_THREAD];
	int failures;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < PER_THREAD; i++) {
		enum queue_err e = queue_committer_submit_wait(w->c,
		    qtest_msg(2, 600, "x.test"), &w->qids[i]);

		if (e != QUEUE_OK || w->qids[i] == 0)
			w->failures++;
	}
	return NULL;
}

/* Runs THREADS submitters; returns the commits it took. */
static uint64_t
run_workload(struct queue *q, struct worker *w)
{
	pthread_t th[THREADS];
	struct queue_stats before, after;
	int i;

	queue_get_stats(q, &before);
	w[0].c = queue_committer_start(q, 1000);
	for (i = 0; i < THREADS; i++) {
		w[i].c = w[0].c;
		w[i].failures = 0;
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	queue_committer_stop(w[0].c);
	queue_get_stats(q, &after);
	return after.commits - before.commits;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
test_group_commit_threads(void **state)
{
	struct qtest *t = qtest_new(16 * MB, 64 * MB);
	struct worker w[THREADS];
	uint64_t all[THREADS * PER_THREAD], commits;
	long syncs;
	size_t i, n = 0;
	int j;

	(void)state;
	memset(w, 0, sizeof(w));
	syncs = atomic_load(&qtest_sync_count);
	commits = run_workload(t->q, w);
	syncs = atomic_load(&qtest_sync_count) - syncs;
	for (j = 0; j < THREADS; j++) {
		assert_int_equal(w[j].failures, 0);
		for (i = 0; i < PER_THREAD; i++)
			all[n++] = w[j].qids[i];
	}
	/* Every message is in the queue, under a distinct id. */
	qsort(all, n, sizeof(all[0]), cmp_u64);
	for (i = 1; i < n; i++)
		assert_true(all[i] != all[i - 1]);
	assert_int_equal(qtest_count(t->q, QDB_MESSAGES), n);
	assert_int_equal(qtest_count(t->q, QDB_RECIPIENTS), 2 * n);
	assert_int_equal(qtest_count(t->q, QDB_SCHEDULE), 2 * n);
	assert_int_equal(qtest_count(t->q, QDB_EVENTS), 2 * n);
	/* Grouped: fewer commits than messages, one data sync each. */
	fprintf(stderr, "group commit: %zu messages, %llu commits, %ld syncs\n",
	    n, (unsigned long long)commits, syncs);
	assert_true(commits >= 1);
	assert_true(commits < n);
	assert_int_equal(syncs, (long)commits);
	assert_int_equal(qtest_check_invariants(t->q), 0);
	qtest_free(t);
}

struct async_ctx {
	struct queue *q;
	pthread_mutex_t lock;
	int answered;
	int visible;		/* answers whose message was readable */
};

static void
async_done(void *arg, enum queue_err status, uint64_t qid)
{
	struct async_ctx *a = arg;
	struct queue_loaded_msg *l;
	int ok = status == QUEUE_OK && queue_load(a->q, qid, &l) == 0;

	if (ok)
		queue_loaded_free(l);
	pthread_mutex_lock(&a->lock);
	a->answered++;
	a->visible += ok;
	pthread_mutex_unlock(&a->lock);
}

struct last_event {
	uint8_t type;
	char recipient[64];
	int64_t time_ms;
};

static int
last_event_cb(void *arg, const struct queue_event *e)
{
	struct last_event *l = arg;

	l->type = e->type;
	l->time_ms = e->time_ms;
	snprintf(l->recipient, sizeof(l->recipient), "%s", e->recipient);
	return 0;
}

/* The answer comes after the commit that holds the message: when the
 * callback runs, the message is already readable by anyone. Invalid
 * messages are answered with their own error, the others go on. */
static void
test_answer_after_commit(void **state)
{
	struct qtest *t = qtest_new(16 * MB, 64 * MB);
	struct queue_committer *c;
	struct async_ctx a;
	struct queue_event e;
	struct last_event ev;
	uint64_t qid = 1;
	int i;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.q = t->q;
	pthread_mutex_init(&a.lock, NULL);
	c = queue_committer_start(t->q, 16);
	for (i = 0; i < 100; i++)
		queue_committer_submit(c, qtest_msg(1, 100, "x.test"),
		    async_done, &a);
	assert_int_equal(queue_committer_submit_wait(c,
	    qtest_msg(0, 100, "x.test"), &qid), QUEUE_ERR_INVALID);
	assert_true(qid == 0);
	/* An event alone is committed too (a recipient refused at RCPT). */
	memset(&e, 0, sizeof(e));
	e.type = QUEUE_EVENT_SUPPRESSED;
	e.recipient = "gone@x.test";
	e.code = 550;
	e.status = "5.7.1";
	queue_committer_submit_event(c, &e);
	queue_committer_stop(c);
	assert_int_equal(a.answered, 100);
	assert_int_equal(a.visible, 100);
	memset(&ev, 0, sizeof(ev));
	assert_int_equal(queue_events_read(t->q, 1, 1000, last_event_cb, &ev,
	    NULL), 0);
	assert_int_equal(ev.type, QUEUE_EVENT_SUPPRESSED);
	assert_string_equal(ev.recipient, "gone@x.test");
	assert_true(ev.time_ms > 0);
	pthread_mutex_destroy(&a.lock);
	qtest_free(t);
}

/* With the disk failing, every submitter hears the error. */
static void
test_commit_failure_answers(void **state)
{
	struct qtest *t = qtest_new(16 * MB, 64 * MB);
	struct queue_committer *c;
	uint64_t qid = 1;

	(void)state;
	c = queue_committer_start(t->q, 16);
	atomic_store(&qtest_sync_errno, EIO);
	assert_int_equal(queue_committer_submit_wait(c,
	    qtest_msg(1, 100, "x.test"), &qid), QUEUE_ERR_IO);
	assert_true(qid == 0);
	atomic_store(&qtest_sync_errno, 0);
	assert_int_equal(queue_committer_submit_wait(c,
	    qtest_msg(1, 100, "x.test"), &qid), QUEUE_OK);
	assert_true(qid != 0);
	queue_committer_stop(c);
	assert_int_equal(qtest_count(t->q, QDB_MESSAGES), 1);
	qtest_free(t);
}

/* The child of the strace test: the same workload, then "commits N". */
static int
child_main(const char *dir)
{
	struct queue *q = qtest_open_dir(dir, 16 * MB, 64 * MB, 0);
	struct worker w[THREADS];
	struct queue_stats st;
	uint64_t commits;
	int j, failures = 0;

	if (q == NULL)
		return 2;
	memset(w, 0, sizeof(w));
	commits = run_workload(q, w);
	for (j = 0; j < THREADS; j++)
		failures += w[j].failures;
	queue_get_stats(q, &st);
	/* All commits of the process, including the one creating the store. */
	printf("commits %llu total %llu failures %d\n",
	    (unsigned long long)commits, (unsigned long long)st.commits,
	    failures);
	fflush(stdout);
	queue_close(q);
	return failures == 0 ? 0 : 1;
}

/* Counts the lines of a file that contain s. */
static int
count_lines(const char *path, const char *s)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, s) != NULL)
			n++;
	fclose(f);
	return n;
}

/* strace, not our own counter, sees one fdatasync per group commit. */
static void
test_strace_syncs(void **state)
{
	struct qtest *t = qtest_new(16 * MB, 64 * MB);
	char self[PATH_MAX], cmd[3 * PATH_MAX], log[300], out[300];
	unsigned long long commits = 0, total = 0;
	int failures = -1, syncs, fsyncs, msyncs;
	ssize_t n;
	FILE *f;

	(void)state;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	/* The child opens the store itself, after the parent closed it. */
	queue_close(t->q);
	t->q = NULL;
	snprintf(log, sizeof(log), "%s/strace.log", t->dir);
	snprintf(out, sizeof(out), "%s/child.out", t->dir);
	/* LeakSanitizer cannot run under ptrace: leaks are checked in the
	 * other tests of this file. */
	snprintf(cmd, sizeof(cmd), "ASAN_OPTIONS=detect_leaks=0 "
	    "strace -f -qq -e signal=none "
	    "-e trace=fdatasync,fsync,msync,sync_file_range,syncfs "
	    "-o '%s' '%s' --commit-child '%s/q' >'%s' 2>/dev/null",
	    log, self, t->dir, out);
	assert_int_equal(system(cmd), 0);
	f = fopen(out, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "commits %llu total %llu failures %d",
	    &commits, &total, &failures), 3);
	fclose(f);
	syncs = count_lines(log, "fdatasync(");
	fsyncs = count_lines(log, " fsync(");
	msyncs = count_lines(log, "msync(");
	fprintf(stderr, "strace: %d messages, %llu commits (%llu with the "
	    "store's creation), %d fdatasync, %d fsync, %d msync\n",
	    THREADS * PER_THREAD, commits, total, syncs, fsyncs, msyncs);
	assert_int_equal(failures, 0);
	assert_true(commits >= 1 && commits < THREADS * PER_THREAD);
	/* One data sync per commit (the meta page is written through an
	 * O_DSYNC descriptor, no extra call), and none elsewhere. */
	assert_int_equal(syncs + fsyncs, (int)total);
	assert_int_equal(msyncs, 0);
	t->q = qtest_open_dir(t->dir, 16 * MB, 64 * MB, 0);
	qtest_free(t);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_group_commit_threads),
		cmocka_unit_test(test_answer_after_commit),
		cmocka_unit_test(test_commit_failure_answers),
		cmocka_unit_test(test_strace_syncs),
	};

	log_init("test_queue_commit", LOG_TARGET_STDERR, false);
	if (argc == 3 && strcmp(argv[1], "--commit-child") == 0)
		return child_main(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
