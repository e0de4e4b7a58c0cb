/*
 * queue-commit.c - benchmark of durable queue commits on the disk where
 * the queue lives: the raw sync rate (write + fdatasync of 4 KiB), LMDB
 * durable commits with one message per transaction, and messages/s with
 * group commit from M concurrent submitter threads; then the time to list
 * N queued messages with their recipients in one read transaction (what
 * ternctl queue does). Prints a table.
 * Not run by tools/check; `make bench-queue` runs it (bench/README.md).
 * Needs write access to a scratch directory, which it removes.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "queue.h"
#include "util.h"

#define MAX_THREADS	1000

static double seconds = 3.0;
static size_t msg_size = 1024;
static long list_count = 100000;

static double
now_s(void)
{
	return (double)tern_monotonic_usec() / 1e6;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: queue-commit [-c CONFIG | -d DIR] [-s SECONDS] [-z BYTES] "
	    "[-m THREADS,...] [-n MESSAGES]\n"
	    "  -c CONFIG  measure on the disk of [server] queue_dir (a scratch\n"
	    "             directory is made inside it and removed)\n"
	    "  -d DIR     make the scratch directory inside DIR (default: .)\n"
	    "  -s SECONDS per measurement (default 3)\n"
	    "  -z BYTES   message size (default 1024)\n"
	    "  -m LIST    submitter threads for group commit (default 1,10,100)\n"
	    "  -n N       messages to queue and list (default 100000, 0: skip)\n");
	exit(2);
}

/* Raw rate of a 4 KiB write followed by fdatasync on one file. */
static double
bench_fsync(const char *dir)
{
	char path[4096], buf[4096];
	double start, end;
	long n = 0;
	int fd;

	if (snprintf(path, sizeof(path), "%s/fsync.dat", dir) >=
	    (int)sizeof(path))
		log_fatal("path too long: %s", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd == -1)
		log_fatal("%s: %s", path, strerror(errno));
	memset(buf, 'x', sizeof(buf));
	start = now_s();
	do {
		if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
		    fdatasync(fd) == -1)
			log_fatal("%s: %s", path, strerror(errno));
		n++;
		end = now_s();
	} while (end - start < seconds);
	close(fd);
	unlink(path);
	return (double)n / (end - start);
}

static struct queue_msg *
make_msg(void)
{
	static char content[1 << 20];
	struct queue_msg_info env;
	struct queue_msg *m;
	size_t left = msg_size;

	if (content[0] == '\0')
		memset(content, 'a', sizeof(content));
	memset(&env, 0, sizeof(env));
	env.sender = "bench@example.test";
	env.source = CLEANUP_SOURCE_SUBMISSION;
	m = queue_msg_new(&env);
	queue_msg_add_rcpt(m, "rcpt@example.test", NULL, 0);
	while (left > 0) {
		size_t k = left < sizeof(content) ? left : sizeof(content);

		queue_msg_append(m, content, k);
		left -= k;
	}
	return m;
}

static struct queue *
open_store(const char *dir, const char *name)
{
	struct queue_options o;
	char path[4096];
	struct queue *q;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path))
		log_fatal("path too long: %s", dir);
	memset(&o, 0, sizeof(o));
	o.dir = path;
	o.map_size = (uint64_t)1 << 30;
	o.map_size_max = (uint64_t)1 << 36;
	if ((q = queue_open(&o)) == NULL)
		log_fatal("cannot open a queue in %s", path);
	return q;
}

/* LMDB durable commits, one message per transaction. */
static double
bench_single(const char *dir)
{
	struct queue *q = open_store(dir, "single");
	double start, end;
	long n = 0;

	start = now_s();
	do {
		struct queue_batch *b = queue_batch_new();

		queue_batch_add(b, make_msg());
		if (queue_batch_commit(q, b) == -1)
			log_fatal("commit: %s", queue_strerror(queue_last_error()));
		queue_batch_free(b);
		n++;
		end = now_s();
	} while (end - start < seconds);
	queue_close(q);
	return (double)n / (end - start);
}

struct group_run {
	struct queue_committer *c;
	atomic_bool stop;
	atomic_long messages;
	atomic_long failures;
};

static void *
submitter(void *arg)
{
	struct group_run *r = arg;
	uint64_t qid;

	while (!atomic_load(&r->stop)) {
		if (queue_committer_submit_wait(r->c, make_msg(), &qid) ==
		    QUEUE_OK)
			atomic_fetch_add(&r->messages, 1);
		else
			atomic_fetch_add(&r->failures, 1);
	}
	return NULL;
}

/* Messages/s and commits/s with group commit from threads submitters. */
static void
bench_group(const char *dir, int threads, double *msgs_s, double *commits_s)
{
	struct queue *q;
	struct group_run r;
	struct queue_stats before, after;
	pthread_t *th = xcalloc((size_t)threads, sizeof(*th));
	char name[32];
	double start, end;
	int i;

	snprintf(name, sizeof(name), "group%d", threads);
	q = open_store(dir, name);
	memset(&r, 0, sizeof(r));
	r.c = queue_committer_start(q, 1000);
	queue_get_stats(q, &before);
	start = now_s();
	for (i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, submitter, &r) != 0)
			log_fatal("cannot start thread %d", i);
	while (now_s() - start < seconds)
		usleep(10000);
	atomic_store(&r.stop, true);
	for (i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	end = now_s();
	queue_committer_stop(r.c);
	queue_get_stats(q, &after);
	queue_close(q);
	free(th);
	if (atomic_load(&r.failures) > 0)
		log_fatal("%ld commits failed", atomic_load(&r.failures));
	*msgs_s = (double)atomic_load(&r.messages) / (end - start);
	*commits_s = (double)(after.commits - before.commits) / (end - start);
}

static int
count_cb(void *arg, const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, size_t n)
{
	long *count = arg;
	size_t i;

	(void)m;
	/* Touch what a listing prints: pending recipients and replies. */
	for (i = 0; i < n; i++)
		if (r[i].state == QUEUE_RCPT_QUEUED && r[i].address[0] != '\0')
			(*count)++;
	return 0;
}

/* Queues n messages (100 per commit), then times one full listing. */
static void
bench_list(const char *dir, long n, double *fill_s, double *list_s)
{
	struct queue *q = open_store(dir, "list");
	double start;
	long done = 0, seen = 0;

	start = now_s();
	while (done < n) {
		struct queue_batch *b = queue_batch_new();
		long k;

		for (k = 0; k < 100 && done < n; k++, done++)
			queue_batch_add(b, make_msg());
		if (queue_batch_commit(q, b) == -1)
			log_fatal("commit: %s", queue_strerror(queue_last_error()));
		queue_batch_free(b);
	}
	*fill_s = now_s() - start;
	start = now_s();
	if (queue_list(q, count_cb, &seen) == -1)
		log_fatal("listing failed");
	*list_s = now_s() - start;
	if (seen != n)
		log_fatal("listed %ld of %ld recipients", seen, n);
	queue_close(q);
}

int
main(int argc, char **argv)
{
	const char *config = NULL, *base = ".", *list = "1,10,100";
	char scratch[4096], cmd[4200], *copy, *tok, *save;
	struct tern_config *cfg = NULL;
	double fsync_s, single_s;
	int c;

	log_init("bench", LOG_TARGET_STDERR, false);
	while ((c = getopt(argc, argv, "c:d:s:z:m:n:h")) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'd': base = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 'z': msg_size = (size_t)atol(optarg); break;
		case 'm': list = optarg; break;
		case 'n': list_count = atol(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || seconds <= 0 || msg_size == 0 || list_count < 0 ||
	    msg_size > (64u << 20))
		usage();
	if (config != NULL) {
		cfg = config_load_or_exit(config);
		base = cfg->server.queue_dir;
	}
	snprintf(scratch, sizeof(scratch), "%s/bench-queue.XXXXXX", base);
	if (mkdtemp(scratch) == NULL)
		log_fatal("mkdtemp %s: %s", scratch, strerror(errno));

	printf("queue commit benchmark in %s (%zu-byte messages, one "
	    "recipient, %.1f s per row)\n\n", scratch, msg_size, seconds);
	printf("%-44s %12s %12s %8s\n", "case", "messages/s", "commits/s",
	    "group");
	fsync_s = bench_fsync(scratch);
	printf("%-44s %12s %12.0f %8s\n", "raw write 4 KiB + fdatasync", "-",
	    fsync_s, "-");
	fflush(stdout);
	single_s = bench_single(scratch);
	printf("%-44s %12.0f %12.0f %8.1f\n", "LMDB durable, 1 message/transaction",
	    single_s, single_s, 1.0);
	fflush(stdout);
	copy = xstrdup(list);
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		int threads = atoi(tok);
		double msgs_s, commits_s;
		char label[64];

		if (threads < 1 || threads > MAX_THREADS)
			log_fatal("bad thread count %s", tok);
		bench_group(scratch, threads, &msgs_s, &commits_s);
		snprintf(label, sizeof(label), "group commit, %d submitter%s",
		    threads, threads == 1 ? "" : "s");
		printf("%-44s %12.0f %12.0f %8.1f\n", label, msgs_s, commits_s,
		    commits_s > 0 ? msgs_s / commits_s : 0.0);
		fflush(stdout);
	}
	free(copy);
	if (list_count > 0) {
		double fill_s, list_s;

		bench_list(scratch, list_count, &fill_s, &list_s);
		printf("\nqueued %ld messages in %.2f s (100 per commit); listing "
		    "them with their recipients in one read transaction: "
		    "%.3f s\n", list_count, fill_s, list_s);
	}
	printf("\nraw sync rate %.0f/s; group commit multiplies messages per "
	    "sync (\"group\" = messages per commit)\n", fsync_s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
	if (system(cmd) != 0)
		log_warn("could not remove %s", scratch);
	config_free(cfg);
	return 0;
}
