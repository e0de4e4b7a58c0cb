/*
 * smtp-sink-lite - an SMTP server that accepts every message and keeps
 * none, for bench/compare-postfix.
 *
 *   smtp-sink-lite HOST:PORT
 *
 * Both MTAs under test relay to it. Postfix's smtp-sink does the same job
 * but reads a message in 4 KiB pieces with a poll() and two sigprocmask()
 * calls around each: it took a sixth of the two cores at 100 KiB, time
 * that both MTAs lost to the sink. This one reads up to 256 KiB at a
 * time, finds the end of DATA with memchr, and answers pipelined commands
 * with one write, so that the benchmark measures the MTAs. Prints the
 * number of messages accepted when it gets SIGTERM.
 *
 * One thread, epoll, non-blocking sockets. It does not store or check
 * anything: a bench tool, not a test double.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SINK_READ_MAX	(256 * 1024)
#define SINK_LINE_MAX	4096
#define SINK_OUT_MAX	8192

struct sink_conn {
	int fd;
	bool in_data;
	int end_state;		/* how much of CR LF . CR LF has been seen */
	bool closing;		/* QUIT answered: close once the reply is out */
	char line[SINK_LINE_MAX];
	size_t line_len;
	char out[SINK_OUT_MAX];
	size_t out_len;
};

static volatile sig_atomic_t sink_stop;
static unsigned long sink_messages;
static char sink_buf[SINK_READ_MAX];

static void
sink_on_signal(int sig)
{
	(void)sig;
	sink_stop = 1;
}

static void
reply(struct sink_conn *c, const char *text)
{
	size_t n = strlen(text);

	if (c->out_len + n <= sizeof(c->out)) {
		memcpy(c->out + c->out_len, text, n);
		c->out_len += n;
	}
}

static void
command(struct sink_conn *c, char *line)
{
	if (strncasecmp(line, "EHLO", 4) == 0)
		reply(c, "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
		    "250 ENHANCEDSTATUSCODES\r\n");
	else if (strncasecmp(line, "HELO", 4) == 0)
		reply(c, "250 sink.test\r\n");
	else if (strncasecmp(line, "MAIL", 4) == 0 ||
	    strncasecmp(line, "RCPT", 4) == 0 ||
	    strncasecmp(line, "RSET", 4) == 0 ||
	    strncasecmp(line, "NOOP", 4) == 0)
		reply(c, "250 2.0.0 Ok\r\n");
	else if (strncasecmp(line, "DATA", 4) == 0) {
		reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		c->in_data = true;
		c->end_state = 2;	/* the command's CR LF starts the match */
	} else if (strncasecmp(line, "QUIT", 4) == 0) {
		reply(c, "221 2.0.0 Bye\r\n");
		c->closing = true;
	} else
		reply(c, "502 5.5.2 Error: command not recognized\r\n");
}

/* Consumes message bytes up to and including the final dot line; returns
 * how many bytes of p it used. */
static size_t
data_feed(struct sink_conn *c, const char *p, size_t n)
{
	static const char end[] = "\r\n.\r\n";
	size_t i = 0;

	while (i < n) {
		if (c->end_state == 0) {
			const char *cr = memchr(p + i, '\r', n - i);

			if (cr == NULL)
				return n;
			i = (size_t)(cr - p);
		}
		char ch = p[i++];

		if (ch == end[c->end_state])
			c->end_state++;
		else
			c->end_state = ch == '\r' ? 1 : 0;
		if (c->end_state == 5) {
			c->in_data = false;
			c->end_state = 0;
			sink_messages++;
			reply(c, "250 2.0.0 Ok: queued\r\n");
			return i;
		}
	}
	return n;
}

static bool
conn_feed(struct sink_conn *c, const char *p, size_t n)
{
	while (n > 0 && !c->closing) {
		if (c->in_data) {
			size_t used = data_feed(c, p, n);

			p += used;
			n -= used;
			continue;
		}
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) + 1 : n;

		if (c->line_len + take >= sizeof(c->line)) {
			reply(c, "500 5.5.0 Error: line too long\r\n");
			return false;
		}
		memcpy(c->line + c->line_len, p, take);
		c->line_len += take;
		p += take;
		n -= take;
		if (nl) {
			c->line[c->line_len] = '\0';
			command(c, c->line);
			c->line_len = 0;
		}
	}
	return true;
}

static bool
conn_flush(struct sink_conn *c)
{
	size_t off = 0;

	while (off < c->out_len) {
		ssize_t w = send(c->fd, c->out + off, c->out_len - off,
		    MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;	/* replies are small: a full socket is a dead peer */
		off += (size_t)w;
	}
	c->out_len = 0;
	return true;
}

static void
conn_close(int ep, struct sink_conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static void
conn_readable(int ep, struct sink_conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, sink_buf, sizeof(sink_buf), 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0) {
			conn_close(ep, c);
			return;
		}
		bool ok = conn_feed(c, sink_buf, (size_t)r);

		if (!conn_flush(c) || !ok || c->closing) {
			conn_close(ep, c);
			return;
		}
		if ((size_t)r < sizeof(sink_buf))
			break;
	}
}

static int
sink_listen(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');

	if (colon == NULL || (size_t)(colon - spec) >= sizeof(host)) {
		fprintf(stderr, "smtp-sink-lite: HOST:PORT expected\n");
		return -1;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';

	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE };
	struct addrinfo *ai;
	int rc = getaddrinfo(host, colon + 1, &hints, &ai);

	if (rc != 0) {
		fprintf(stderr, "smtp-sink-lite: %s: %s\n", spec, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, 1024) < 0) {
		fprintf(stderr, "smtp-sink-lite: %s: %s\n", spec, strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static void
sink_accept(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

		if (fd < 0)
			return;
		struct sink_conn *c = calloc(1, sizeof(*c));
		int one = 1;

		if (c == NULL) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		reply(c, "220 sink.test ESMTP smtp-sink-lite\r\n");
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		if (!conn_flush(c) || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: smtp-sink-lite HOST:PORT\n");
		return 2;
	}
	int lfd = sink_listen(argv[1]);

	if (lfd < 0)
		return 1;
	struct sigaction sa = { .sa_handler = sink_on_signal };

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int ep = epoll_create1(0);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };

	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
	while (!sink_stop) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				sink_accept(ep, lfd);
			else
				conn_readable(ep, evs[i].data.ptr);
		}
	}
	printf("%lu\n", sink_messages);
	return 0;
}
