/*
 * smtp-load - a load generator for SMTP servers, for bench/compare-postfix.
 *
 *   smtp-load [-s SESSIONS] [-m MESSAGES] [-l BYTES] [-f FROM] [-t TO]
 *             [-r] HOST:PORT
 *
 * SESSIONS threads share MESSAGES messages of about BYTES bytes each. A
 * session keeps its connection for many messages (what an application
 * with a connection pool does); -r reconnects for every message instead
 * (what smtp-source does). The latency of a message is the time from
 * sending MAIL FROM to the 250 after the final dot: what a submitting
 * application waits for. Prints one JSON object on stdout.
 *
 * Blocking sockets and one thread per session: simple, and with 20
 * sessions the generator is never the bottleneck.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct load {
	const char *host;
	const char *port;
	const char *from;
	const char *to;
	unsigned messages;
	size_t size;
	int reconnect;
	long pid;			/* in each Message-ID; getpid() is a system call */
	atomic_uint next;		/* next message number to send */
	atomic_uint ok;
	atomic_uint failed;
	double *latency;		/* seconds, per message number */
	char *body;			/* dot-safe, CRLF lines */
	size_t body_len;
};

struct conn {
	int fd;
	char buf[8192];
	size_t len;
};

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
conn_open(struct conn *c, const struct load *ld)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int one = 1;

	c->len = 0;
	if (getaddrinfo(ld->host, ld->port, &hints, &ai) != 0)
		return -1;
	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		freeaddrinfo(ai);
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		return -1;
	}
	freeaddrinfo(ai);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static int
send_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads one whole (possibly multiline) reply; returns its code or -1. */
static int
read_reply(struct conn *c)
{
	for (;;) {
		char *eol;

		while ((eol = memchr(c->buf, '\n', c->len)) != NULL) {
			size_t line = (size_t)(eol - c->buf) + 1;
			int last = line >= 4 && c->buf[3] != '-';
			int code = line >= 3 ? atoi(c->buf) : -1;

			memmove(c->buf, eol + 1, c->len - line);
			c->len -= line;
			if (last)
				return code;
		}
		if (c->len == sizeof(c->buf))
			c->len = 0;	/* an overlong line: drop it */
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

static int
command(struct conn *c, const char *line, int want)
{
	if (send_all(c, line, strlen(line)) < 0)
		return -1;
	int code = read_reply(c);
	return code / 100 == want / 100 ? 0 : -1;
}

static int
session_start(struct conn *c, const struct load *ld)
{
	if (conn_open(c, ld) < 0)
		return -1;
	if (read_reply(c) != 220 || command(c, "EHLO load.bench.test\r\n", 250) < 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

static void
session_end(struct conn *c)
{
	if (c->fd < 0)
		return;
	command(c, "QUIT\r\n", 221);
	close(c->fd);
	c->fd = -1;
}

static int
send_message(struct conn *c, struct load *ld, unsigned n)
{
	char line[512], head[1024];

	snprintf(line, sizeof(line), "MAIL FROM:<%s>\r\n", ld->from);
	if (command(c, line, 250) < 0)
		return -1;
	snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", ld->to);
	if (command(c, line, 250) < 0 || command(c, "DATA\r\n", 354) < 0)
		return -1;
	int hl = snprintf(head, sizeof(head),
	    "From: Bench <%s>\r\nTo: <%s>\r\nSubject: load message %u\r\n"
	    "Message-ID: <load.%u.%ld@bench.test>\r\n"
	    "Date: Thu, 26 Nov 2026 00:00:00 +0000\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n",
	    ld->from, ld->to, n, n, ld->pid);
	if (send_all(c, head, (size_t)hl) < 0 ||
	    send_all(c, ld->body, ld->body_len) < 0)
		return -1;
	return command(c, ".\r\n", 250);
}

static void *
session_run(void *arg)
{
	struct load *ld = arg;
	struct conn c = { .fd = -1 };

	for (;;) {
		unsigned n = atomic_fetch_add(&ld->next, 1);

		if (n >= ld->messages)
			break;
		if (c.fd < 0 && session_start(&c, ld) < 0) {
			atomic_fetch_add(&ld->failed, 1);
			ld->latency[n] = -1;
			usleep(10000);
			continue;
		}
		double t0 = now_sec();
		if (send_message(&c, ld, n) == 0) {
			ld->latency[n] = now_sec() - t0;
			atomic_fetch_add(&ld->ok, 1);
		} else {
			ld->latency[n] = -1;
			atomic_fetch_add(&ld->failed, 1);
			close(c.fd);	/* the session may be out of step */
			c.fd = -1;
		}
		if (ld->reconnect)
			session_end(&c);
	}
	session_end(&c);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* A body of about size bytes: 76-character lines that never start with a dot. */
static void
make_body(struct load *ld)
{
	size_t lines = ld->size / 78 + 1;

	ld->body = malloc(lines * 78 + 1);
	if (ld->body == NULL)
		exit(1);
	char *p = ld->body;
	for (size_t i = 0; i < lines; i++) {
		for (int k = 0; k < 76; k++)
			*p++ = (char)('a' + (i + k) % 26);
		*p++ = '\r';
		*p++ = '\n';
	}
	ld->body_len = (size_t)(p - ld->body);
}

static void
usage(void)
{
	fprintf(stderr, "usage: smtp-load [-s sessions] [-m messages] [-l bytes]"
	    " [-f from] [-t to] [-r] host:port\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct load ld = {
		.from = "load@bench.test", .to = "sink@sink.test",
		.messages = 1000, .size = 4096, .pid = (long)getpid(),
	};
	unsigned sessions = 20;
	int opt;

	while ((opt = getopt(argc, argv, "s:m:l:f:t:r")) != -1) {
		switch (opt) {
		case 's': sessions = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'm': ld.messages = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'l': ld.size = strtoul(optarg, NULL, 10); break;
		case 'f': ld.from = optarg; break;
		case 't': ld.to = optarg; break;
		case 'r': ld.reconnect = 1; break;
		default: usage();
		}
	}
	if (optind + 1 != argc || sessions == 0 || sessions > 1000 ||
	    ld.messages == 0)
		usage();
	char *hp = strdup(argv[optind]), *colon = strrchr(hp, ':');
	if (colon == NULL)
		usage();
	*colon = '\0';
	ld.host = hp;
	ld.port = colon + 1;
	make_body(&ld);
	ld.latency = calloc(ld.messages, sizeof(double));
	pthread_t *th = calloc(sessions, sizeof(pthread_t));
	if (ld.latency == NULL || th == NULL)
		return 1;

	double t0 = now_sec();
	for (unsigned i = 0; i < sessions; i++)
		pthread_create(&th[i], NULL, session_run, &ld);
	for (unsigned i = 0; i < sessions; i++)
		pthread_join(th[i], NULL);
	double elapsed = now_sec() - t0;

	size_t n = 0;
	for (unsigned i = 0; i < ld.messages; i++)
		if (ld.latency[i] >= 0)
			ld.latency[n++] = ld.latency[i];
	qsort(ld.latency, n, sizeof(double), cmp_double);
	double p50 = n ? ld.latency[n / 2] : 0;
	double p99 = n ? ld.latency[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0;
	printf("{\"ok\": %u, \"failed\": %u, \"seconds\": %.3f, \"per_second\": %.1f,"
	    " \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"bytes\": %zu}\n",
	    atomic_load(&ld.ok), atomic_load(&ld.failed), elapsed,
	    atomic_load(&ld.ok) / elapsed, p50 * 1000, p99 * 1000, ld.body_len);
	return atomic_load(&ld.failed) ? 1 : 0;
}
