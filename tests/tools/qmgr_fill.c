/*
 * qmgr_fill - a test and benchmark tool standing in for tern-cleanup:
 * commits N messages with libternq, in batches, and optionally tells
 * tern-qmgr about them (IPC_QMGR_QUEUED) or defers every recipient to a
 * later time (as if an attempt had failed), to build large deferred
 * queues for bench/qmgr-rss. Prints each committed queue id with -p.
 *
 *   qmgr_fill -d QUEUE_DIR [-n MESSAGES] [-t RCPT]... [-g DOMAIN:K [-w W]]
 *              [-s SENDER] [-S SIZE] [-N NOTIFY] [-b BATCH] [-u USER]
 *              [-q QMGR_SOCKET] [-D SECONDS] [-H] [-p]
 */
#include "autoconfig.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "util.h"

static void
usage(void)
{
	fprintf(stderr, "usage: qmgr_fill -d queue_dir [-n messages] [-t rcpt]... "
	    "[-g domain:k [-w domains]] [-s sender] [-S size] [-N notify] [-b batch] [-u user] "
	    "[-q qmgr_socket] [-D defer_seconds] [-H] [-p]\n");
	exit(2);
}

/* Sends HELLO and QMGR_QUEUED, as cleanup does after a commit. */
static void
notify_qmgr(const char *path)
{
	struct ipc_out *o;
	const uint8_t *b;
	size_t len;
	int fd = ipc_connect_unix(path);

	if (fd == -1) {
		fprintf(stderr, "qmgr_fill: connect %s: %s\n", path, strerror(errno));
		exit(1);
	}
	/* ipc_connect_unix makes it non-blocking; these writes are tiny. */
	o = ipc_out_new(IPC_HELLO, 0);
	ipc_put_u32(o, IPC_VERSION);
	ipc_put_str(o, "cleanup");
	b = ipc_out_bytes(o, &len);
	if (write(fd, b, len) != (ssize_t)len)
		exit(1);
	ipc_out_free(o);
	o = ipc_out_new(IPC_QMGR_QUEUED, 0);
	ipc_put_i64(o, tern_now());
	b = ipc_out_bytes(o, &len);
	if (write(fd, b, len) != (ssize_t)len)
		exit(1);
	ipc_out_free(o);
	usleep(50000);
	close(fd);
}

/* Claims everything due and defers it to now + seconds. */
static void
defer_all(struct queue *q, int64_t seconds)
{
	size_t total = 0;

	for (;;) {
		struct queue_claim *c;
		struct queue_update *u;
		int64_t now = queue_now_ms();

		if (queue_claim_due(q, now, 10000, &c) == -1) {
			fprintf(stderr, "qmgr_fill: claim: %s\n",
			    queue_strerror(queue_last_error()));
			exit(1);
		}
		if (c->n_rcpts == 0) {
			queue_claim_free(c);
			break;
		}
		u = queue_update_new(now);
		for (size_t i = 0; i < c->n_msgs; i++)
			for (size_t k = 0; k < c->msgs[i].n_rcpts; k++) {
				struct queue_result r;

				memset(&r, 0, sizeof(r));
				r.qid = c->msgs[i].info.qid;
				r.rcpt = c->msgs[i].rcpts[k].index;
				r.state = QUEUE_RCPT_DEFERRED;
				r.attempted = true;
				r.time_ms = now;
				r.next_attempt_ms = now + seconds * 1000;
				r.code = 451;
				r.status = "4.3.0";
				r.text = "deferred by qmgr_fill";
				r.remote_host = "";
				r.bounce_class = "";
				queue_update_result(u, &r);
			}
		if (queue_update_commit(q, u) == -1) {
			fprintf(stderr, "qmgr_fill: defer: %s\n",
			    queue_strerror(queue_last_error()));
			exit(1);
		}
		total += c->n_rcpts;
		queue_update_free(u);
		queue_claim_free(c);
	}
	fprintf(stderr, "qmgr_fill: deferred %zu recipient(s)\n", total);
}

int
main(int argc, char **argv)
{
	struct queue_options o;
	struct queue *q;
	const char *dir = NULL, *sender = "sender@example.test", *user = NULL;
	const char *qmgr_socket = NULL, *gen_domain = NULL;
	char **rcpts = NULL;
	size_t n_rcpts = 0, batch = 1000;
	uint64_t n = 1, size = 200, gen_k = 0, width = 1, v;
	int64_t defer = 0;
	uint8_t notify = 0;
	bool hold = false, print = false;
	char *body;
	int ch;

	log_init("qmgr_fill", LOG_TARGET_STDERR, false);
	while ((ch = getopt(argc, argv, "d:n:t:g:w:s:S:N:b:u:q:D:Hp")) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'n': if (parse_uint64(optarg, 100000000, &n) == -1) usage(); break;
		case 't':
			rcpts = xreallocarray(rcpts, n_rcpts + 1, sizeof(*rcpts));
			rcpts[n_rcpts++] = optarg;
			break;
		case 'g': {
			char *colon = strrchr(optarg, ':');

			if (colon == NULL || parse_uint64(colon + 1, QUEUE_RCPT_MAX,
			    &gen_k) == -1)
				usage();
			*colon = '\0';
			gen_domain = optarg;
			break;
		}
		case 'w':
			if (parse_uint64(optarg, 1000000, &width) == -1 || width == 0)
				usage();
			break;
		case 's': sender = optarg; break;
		case 'S': if (parse_uint64(optarg, 1 << 30, &size) == -1) usage(); break;
		case 'N': if (parse_uint64(optarg, 15, &v) == -1) usage();
			notify = (uint8_t)v; break;
		case 'b': if (parse_uint64(optarg, 100000, &v) == -1 || v == 0) usage();
			batch = v; break;
		case 'u': user = optarg; break;
		case 'q': qmgr_socket = optarg; break;
		case 'D': if (parse_uint64(optarg, 100000000, &v) == -1) usage();
			defer = (int64_t)v; break;
		case 'H': hold = true; break;
		case 'p': print = true; break;
		default: usage();
		}
	}
	if (dir == NULL || (n_rcpts == 0 && gen_k == 0))
		usage();
	if (user != NULL && geteuid() == 0) {
		struct passwd *pw = getpwnam(user);

		if (pw == NULL || setgid(pw->pw_gid) == -1 ||
		    setuid(pw->pw_uid) == -1) {
			fprintf(stderr, "qmgr_fill: cannot become %s\n", user);
			return 1;
		}
	}
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.map_size = (uint64_t)1 << 30;
	o.map_size_max = (uint64_t)1 << 36;
	if ((q = queue_open(&o)) == NULL) {
		fprintf(stderr, "qmgr_fill: open %s: %s\n", dir,
		    queue_strerror(queue_last_error()));
		return 1;
	}
	body = xmalloc(size + 1);
	for (uint64_t i = 0; i < size; i++)
		body[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : 'x';
	for (uint64_t done = 0; done < n;) {
		struct queue_batch *b = queue_batch_new();

		for (; queue_batch_count(b) < batch && done < n; done++) {
			struct queue_msg_info env;
			struct queue_msg *m;

			memset(&env, 0, sizeof(env));
			env.sender = sender;
			env.envid = "";
			env.auth_user = "";
			env.client_addr = "";
			env.client_name = "";
			env.stream = "";
			env.message_id = "";
			env.source = CLEANUP_SOURCE_SUBMISSION;
			env.hold = hold;
			m = queue_msg_new(&env);
			for (size_t i = 0; i < n_rcpts; i++)
				queue_msg_add_rcpt(m, rcpts[i], "", notify);
			for (uint64_t k = 0; k < gen_k; k++) {
				char addr[QUEUE_ADDRESS_MAX];

				/* -w spreads them over d0.DOMAIN, d1.DOMAIN, ... */
				if (width > 1)
					snprintf(addr, sizeof(addr), "r%llu-%llu@d%llu.%s",
					    (unsigned long long)done,
					    (unsigned long long)k,
					    (unsigned long long)((done * gen_k + k) % width),
					    gen_domain);
				else
					snprintf(addr, sizeof(addr), "r%llu-%llu@%s",
					    (unsigned long long)done,
					    (unsigned long long)k, gen_domain);
				queue_msg_add_rcpt(m, addr, "", notify);
			}
			queue_msg_append(m, body, size);
			queue_batch_add(b, m);
		}
		if (queue_batch_commit(q, b) == -1) {
			fprintf(stderr, "qmgr_fill: commit: %s\n",
			    queue_strerror(queue_batch_status(b, 0)));
			return 1;
		}
		for (size_t i = 0; print && i < queue_batch_count(b); i++) {
			char id[QUEUE_ID_LEN + 1];

			queue_id_format(queue_batch_qid(b, i), id);
			printf("%s\n", id);
		}
		queue_batch_free(b);
	}
	if (defer > 0)
		defer_all(q, defer);
	fflush(stdout);
	free(body);
	free(rcpts);
	queue_close(q);
	if (qmgr_socket != NULL)
		notify_qmgr(qmgr_socket);
	return 0;
}
