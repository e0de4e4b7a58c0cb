/*
 * session.c - one SMTP session of tern-smtpd: its socket (a plain one
 * read here, a TLS one through its bufferevent), reading command lines
 * and the DATA/BDAT stream, writing replies, timeouts, STARTTLS, and the
 * one function that changes state. The commands themselves are in
 * commands.c. Runs in tern-smtpd, unprivileged.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "header_from.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

#define DATA_CHUNK		16384
#define CLOSE_POLL_MS		20
/* Input a plain session buffers at most while it waits for cleanup. */
#define READ_HIGH_WATER		(256 * 1024)
/* Replies a session holds for a client that does not read them; past
 * this it reads no more commands until they are written. */
#define OUTPUT_HIGH_WATER	(64 * 1024)
/* One read() of a plain session takes at most this much. */
#define READ_MAX		(128 * 1024)

static const char *const state_names[] = {
	[S_CONNECTED] = "connected",
	[S_TLS_HANDSHAKE] = "tls-handshake",
	[S_HELO] = "helo",
	[S_READY] = "ready",
	[S_MAIL] = "mail",
	[S_RCPT] = "rcpt",
	[S_DATA] = "data",
	[S_BDAT] = "bdat",
	[S_AUTH] = "auth",
	[S_QUIT] = "quit",
};

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_plain_read_cb(evutil_socket_t fd, short what, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static bool session_output_full(struct session *s);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_process(struct session *s);
static void session_drain_if_idle(struct session *s);

/* The one place a session changes state; -v logs every change. */
void
session_enter_state(struct session *s, enum session_state st)
{
	log_debug("session %llu: %s -> %s", (unsigned long long)s->id,
	    state_names[s->state], state_names[st]);
	s->state = st;
}

static void
session_set_timeouts(struct session *s)
{
	struct timeval tv = { smtpd.d.cfg->smtpd.timeout, 0 };

	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

static void
session_log_disconnect(struct session *s)
{
	char line[512];
	size_t n = 0;
	const struct { const char *name; unsigned v; } counts[] = {
		{ "ehlo", s->n_ehlo }, { "helo", s->n_helo },
		{ "starttls", s->n_starttls }, { "auth", s->n_auth },
		{ "mail", s->n_mail }, { "rcpt", s->n_rcpt },
		{ "data", s->n_data }, { "bdat", s->n_bdat },
		{ "rset", s->n_rset }, { "noop", s->n_noop },
		{ "vrfy", s->n_vrfy }, { "help", s->n_help },
		{ "quit", s->n_quit }, { "unknown", s->n_unknown },
	};

	line[0] = '\0';
	for (size_t i = 0; i < TERN_ARRAY_LEN(counts); i++)
		if (counts[i].v > 0 && n < sizeof(line))
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%u",
			    counts[i].name, counts[i].v);
	log_info("disconnect from unknown[%s]%s commands=%u", s->addr, line,
	    s->n_commands);
}

static void
session_free(struct session *s)
{
	session_log_disconnect(s);
	auth_cancel(s);
	session_reset_transaction(s);
	if (s->ev_read != NULL)
		event_free(s->ev_read);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->plain_in != NULL)
		evbuffer_free(s->plain_in);
	event_free(s->ev_timer);
	event_free(s->ev_flush);
	evbuffer_free(s->replies);
	if (s->counted)
		clients_remove(s->addr);
	free(s->auth_user);
	free(s->auth_login_user);
	LIST_REMOVE(s, link);
	free(s);
	smtpd.n_sessions--;
	if (smtpd.d.draining && smtpd.n_sessions == 0)
		daemon_exit(&smtpd.d);
}

/*
 * Writes the replies collected in this turn. Straight to the socket when
 * the bufferevent has nothing queued: through the bufferevent, each reply
 * costs two epoll_ctl() (write event on, then off) and a loop turn. What
 * the socket does not take (or an error) is left to the bufferevent.
 */
static void
session_flush_replies(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (evbuffer_get_length(s->replies) == 0)
		return;
	if (evbuffer_get_length(out) == 0)
		(void)evbuffer_write(s->replies, bufferevent_getfd(s->bev));
	if (evbuffer_get_length(s->replies) > 0)
		evbuffer_add_buffer(out, s->replies);
	else if (s->closing)
		session_write_cb(s->bev, s);
}

static void
session_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_flush_replies(arg);
}

static void
session_write_line(struct session *s, const char *fmt, va_list ap)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (s->plain) {
		out = s->replies;
		event_active(s->ev_flush, EV_WRITE, 0);
	}
	evbuffer_add_vprintf(out, fmt, ap);
	evbuffer_add(out, "\r\n", 2);
}

void
session_reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_write_line(s, fmt, ap);
	va_end(ap);
}

/* A 4xx/5xx reply that counts toward max_errors. */
void
session_reply_error(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_write_line(s, fmt, ap);
	va_end(ap);
	if (++s->errors >= smtpd.d.cfg->smtpd.max_errors && !s->closing) {
		log_info("too many errors from unknown[%s]", s->addr);
		session_reply(s, "421 4.7.0 %s Error: too many errors",
		    smtpd.d.cfg->server.hostname);
		session_close_after_reply(s);
	}
}

/*
 * Reading on and off. A plain session reads through its own ev_read
 * (session_plain_read_cb); adding it again restarts the read timeout,
 * with no system call when it was added already. A TLS session reads
 * through its bufferevent.
 */
static void
session_read_on(struct session *s)
{
	struct timeval tv = { smtpd.d.cfg->smtpd.timeout, 0 };

	if (!s->plain) {
		bufferevent_enable(s->bev, EV_READ);
		return;
	}
	/* Like the bufferevent's high watermark: no more while this much
	 * waits (only a session waiting for cleanup gets there). */
	if (evbuffer_get_length(s->in) >= READ_HIGH_WATER) {
		if (s->reading)
			event_del(s->ev_read);
		s->reading = false;
		return;
	}
	event_add(s->ev_read, &tv);
	s->reading = true;
}

static void
session_read_off(struct session *s)
{
	if (!s->plain) {
		bufferevent_disable(s->bev, EV_READ);
		return;
	}
	if (s->reading)
		event_del(s->ev_read);
	s->reading = false;
}

/* Stops reading; the session ends once the replies are written. */
void
session_close_after_reply(struct session *s)
{
	s->closing = true;
	session_read_off(s);
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
	if (s->state != S_QUIT)
		session_enter_state(s, S_QUIT);
	if (evbuffer_get_length(s->replies) > 0)
		session_flush_replies(s);	/* closes once written */
	else if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_write_cb(s->bev, s);
}

/*
 * Stops reading until session_resume(). A plain session waiting for
 * cleanup (three times per message) reads on into its buffer instead,
 * bounded by READ_HIGH_WATER: two epoll_ctl() per wait saved. An EOF, error
 * or timeout that comes meanwhile waits for the end of the wait (see
 * session_event_cb).
 */
void
session_wait(struct session *s, enum session_wait w)
{
	s->wait = w;
	if (!(s->plain && w == W_CLEANUP))
		session_read_off(s);
}

/* Ends a wait and reads on: pipelined commands may be waiting. */
void
session_resume(struct session *s)
{
	s->wait = W_NONE;
	if (s->closing)
		return;
	/* Restarts the read timeout; no system call when still reading. */
	session_read_on(s);
	/* From inside session_process, its loop reads on by itself. */
	if (!s->in_process)
		session_process(s);
	/* A plain session that stopped at READ_HIGH_WATER used its input
	 * just now: read again. */
	if (s->plain && !s->reading && !s->closing && (s->wait == W_NONE ||
	    s->wait == W_CLEANUP))
		session_read_on(s);
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct bufferevent *under;

	(void)fd;
	(void)what;
	if (s->closing) {
		/* A TLS filter: wait until the socket took the last bytes. */
		under = bufferevent_get_underlying(s->bev);
		if (under != NULL &&
		    evbuffer_get_length(bufferevent_get_output(under)) > 0) {
			struct timeval tv = { 0, CLOSE_POLL_MS * 1000 };

			evtimer_add(s->ev_timer, &tv);
			return;
		}
		session_free(s);
		return;
	}
	switch (s->state) {
	case S_CONNECTED:
		session_reply(s, "220 %s ESMTP tern", smtpd.d.cfg->server.hostname);
		session_enter_state(s, S_HELO);
		session_drain_if_idle(s);
		break;
	default:
		if (s->wait == W_DELAY) {
			if (s->delayed_reply != NULL) {
				const char *r = s->delayed_reply;

				s->delayed_reply = NULL;
				session_reply_error(s, "%s", r);
			}
			session_resume(s);
		} else if (s->wait == W_BACKPRESSURE) {
			if (is_cleanup_full() && !s->tx->lost) {
				struct timeval tv = { 0, 10 * 1000 };

				evtimer_add(s->ev_timer, &tv);
				return;
			}
			session_resume(s);
		}
		break;
	}
}

/* Parks the session for a while (AUTH failure delay). */
void
session_delay(struct session *s, double seconds)
{
	struct timeval tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	session_wait(s, W_DELAY);
	evtimer_add(s->ev_timer, &tv);
}

void
session_reset_transaction(struct session *s)
{
	if (s->tx == NULL)
		return;
	if (s->tx->begun)
		cleanup_abort(s);
	free(s->tx->hdr);
	free(s->tx);
	s->tx = NULL;
}

static void
session_greet(struct session *s)
{
	int64_t delay = smtpd.d.cfg->smtpd.greeting_delay;

	if (delay > 0) {
		struct timeval tv = { delay, 0 };

		session_enter_state(s, S_CONNECTED);
		evtimer_add(s->ev_timer, &tv);
		return;
	}
	session_reply(s, "220 %s ESMTP tern", smtpd.d.cfg->server.hostname);
	session_enter_state(s, S_HELO);
}

void
session_accept(struct listener *l, int fd, struct sockaddr *sa, int salen)
{
	struct session *s = xcalloc(1, sizeof(*s));
	const struct tern_config *cfg = smtpd.d.cfg;
	bool smtps = l->cfg->mode == LISTEN_SMTPS;
	const char *refuse = NULL;

	s->id = ++smtpd.next_id;
	LIST_INSERT_HEAD(&smtpd.sessions, s, link);
	s->listener = l;
	memcpy(&s->peer, sa, (size_t)salen < sizeof(s->peer) ? (size_t)salen
	    : sizeof(s->peer));
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, s->addr,
		    sizeof(s->addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr,
		    s->addr, sizeof(s->addr));
	else
		tern_strlcpy(s->addr, "local", sizeof(s->addr));
	s->trusted = is_addr_in_cidrs(sa, l->cfg->trusted_networks,
	    l->cfg->n_trusted_networks);
	smtpd.n_sessions++;
	log_info("connect from unknown[%s] to [listen %s]", s->addr, l->cfg->name);

	if (smtpd.n_sessions > cfg->smtpd.max_sessions)
		refuse = "421 4.3.2 Too many sessions, try again later";
	else if (clients_add(s->addr, cfg->smtpd.max_sessions_per_client) == -1)
		refuse = "421 4.7.0 Too many sessions from your address";
	else
		s->counted = true;

	s->ev_timer = evtimer_new(smtpd.d.base, session_timer_cb, s);
	s->ev_flush = event_new(smtpd.d.base, -1, 0, session_flush_cb, s);
	s->replies = evbuffer_new();
	if (s->ev_flush == NULL || s->replies == NULL)
		log_fatal("cannot allocate a session");
	fd_set_tcp_nodelay(fd);
	if (smtps && refuse == NULL) {
		s->bev = tls_socket_new(l, fd);
	} else {
		s->bev = bufferevent_socket_new(smtpd.d.base, fd,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		s->plain = true;
		s->plain_in = evbuffer_new();
		s->ev_read = event_new(smtpd.d.base, fd, EV_READ | EV_PERSIST,
		    session_plain_read_cb, s);
		if (s->plain_in == NULL || s->ev_read == NULL)
			log_fatal("cannot allocate a session");
	}
	if (s->bev == NULL || s->ev_timer == NULL)
		log_fatal("cannot allocate a session");
	s->in = s->plain ? s->plain_in : bufferevent_get_input(s->bev);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	session_set_timeouts(s);
	/* A plain session's bufferevent only writes. */
	bufferevent_enable(s->bev, s->plain ? EV_WRITE : EV_READ | EV_WRITE);
	session_read_on(s);
	if (refuse != NULL && smtps) {
		/* No TLS for a refused client: just close. */
		log_info("refused unknown[%s]: %s", s->addr, refuse + 10);
		session_close_after_reply(s);
		return;
	}
	if (refuse != NULL) {
		log_info("refused unknown[%s]: %s", s->addr, refuse + 10);
		session_reply(s, "%s", refuse);
		session_close_after_reply(s);
		return;
	}
	if (smtps)
		session_enter_state(s, S_TLS_HANDSHAKE);
	else
		session_greet(s);
}

void
session_start_tls(struct session *s)
{
	/* Plaintext sent after STARTTLS is an injection attempt: drop it. */
	evbuffer_drain(s->in, evbuffer_get_length(s->in));
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/* The 220 goes out in the clear, before the filter exists. */
	session_flush_replies(s);
	/* From now on the bufferevent reads the socket, under the filter. */
	session_read_off(s);
	s->plain = false;
	bufferevent_enable(s->bev, EV_READ);
	s->bev = tls_filter_new(s->listener, s->bev);
	s->in = bufferevent_get_input(s->bev);
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	session_set_timeouts(s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	/* Nothing learned before TLS survives it (RFC 3207 4.2). */
	session_reset_transaction(s);
	s->helo[0] = '\0';
	s->esmtp = false;
	free(s->auth_user);
	s->auth_user = NULL;
	session_enter_state(s, S_TLS_HANDSHAKE);
}

static void
session_tls_done(struct session *s)
{
	s->tls = true;
	tls_describe(s->bev, s->tls_info, sizeof(s->tls_info));
	log_info("unknown[%s]: TLS established: %s", s->addr, s->tls_info);
	if (s->listener->cfg->mode == LISTEN_SMTPS)
		session_greet(s);
	else
		session_enter_state(s, S_HELO);
	session_process(s);
}

/* Reads one command line; 1 when *line was set, 0 when more is needed. */
static int
session_read_line(struct session *s, char **line)
{
	struct evbuffer *in = s->in;
	size_t len = evbuffer_get_length(in), eol_len, max;
	struct evbuffer_ptr eol;
	char peek[5];
	char *buf;

	max = SMTP_LINE_MAX;
	if (s->state == S_AUTH ||
	    (evbuffer_copyout(in, peek, 5) == 5 && has_ascii_prefix_ci(peek, "AUTH ")))
		max = SMTP_AUTH_LINE_MAX;
	for (;;) {
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos == -1) {
			if (len > max) {
				evbuffer_drain(in, len);
				if (!s->discard_line) {
					s->discard_line = true;
					session_reply_error(s, "500 5.5.2 Error: line too long");
				}
			}
			return 0;
		}
		if (s->discard_line) {
			evbuffer_drain(in, (size_t)eol.pos + 1);
			s->discard_line = false;
			len = evbuffer_get_length(in);
			if (s->closing)
				return 0;
			continue;
		}
		break;
	}
	if ((size_t)eol.pos + 1 > max) {
		evbuffer_drain(in, (size_t)eol.pos + 1);
		session_reply_error(s, "500 5.5.2 Error: line too long");
		return -1;
	}
	buf = xmalloc((size_t)eol.pos + 1);
	evbuffer_remove(in, buf, (size_t)eol.pos);
	evbuffer_drain(in, 1);
	buf[eol.pos] = '\0';
	/* Only CRLF ends a line: a bare LF or CR anywhere is refused. */
	if (eol.pos == 0 || buf[eol.pos - 1] != '\r') {
		free(buf);
		session_reply_error(s, "500 5.5.2 Error: bare LF in command");
		return -1;
	}
	buf[eol.pos - 1] = '\0';
	if (memchr(buf, '\r', (size_t)eol.pos - 1) != NULL ||
	    memchr(buf, '\0', (size_t)eol.pos - 1) != NULL) {
		free(buf);
		session_reply_error(s, "500 5.5.2 Error: bare CR or NUL in command");
		return -1;
	}
	*line = buf;
	return 1;
}

/* Runs the input that is there: commands, or the message stream. */
static void session_process_input(struct session *s);

static void
session_process(struct session *s)
{
	if (s->in_process)
		return;
	s->in_process = true;
	session_process_input(s);
	s->in_process = false;
	session_drain_if_idle(s);
}

static void
session_process_input(struct session *s)
{
	struct evbuffer *in;

	while (!s->closing && s->wait == W_NONE) {
		char *line;
		int r;

		in = s->in;
		switch (s->state) {
		case S_CONNECTED:
			if (evbuffer_get_length(in) == 0)
				return;
			log_info("unknown[%s] talked before the greeting", s->addr);
			session_reply(s, "554 5.5.0 Error: talking before the greeting");
			session_close_after_reply(s);
			return;
		case S_TLS_HANDSHAKE:
		case S_QUIT:
			return;
		case S_DATA:
		case S_BDAT:
			if (evbuffer_get_length(in) == 0)
				return;
			session_data_input(s);
			continue;
		default:
			break;
		}
		if (session_output_full(s))
			return;
		r = session_read_line(s, &line);
		if (r == 0)
			return;
		if (r < 0)
			continue;
		if (s->state == S_AUTH)
			smtp_auth_continue(s, line);
		else
			smtp_command(s, line);
		free(line);
	}
}

static void
session_timeout(struct session *s)
{
	log_info("timeout after %s from unknown[%s]", state_names[s->state],
	    s->addr);
	session_read_off(s);
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	bufferevent_enable(s->bev, EV_WRITE);
	session_reply(s, "421 4.4.2 %s Error: timeout exceeded",
	    smtpd.d.cfg->server.hostname);
	session_close_after_reply(s);
}

/* New input was read: runs it, and times a partial command line. */
static void
session_input_arrived(struct session *s)
{
	uint64_t now;

	session_process(s);
	if (s->closing || s->wait != W_NONE || evbuffer_get_length(s->in) == 0) {
		s->partial_since_usec = 0;
		return;
	}
	now = tern_monotonic_usec();
	if (s->partial_since_usec == 0)
		s->partial_since_usec = now;
	else if (now - s->partial_since_usec >
	    (uint64_t)smtpd.d.cfg->smtpd.timeout * 1000000)
		session_timeout(s);
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_input_arrived(arg);
}

/* The socket of a plain session ended (EOF or error) or timed out. */
static void
session_plain_read_end(struct session *s, bool timeout)
{
	/* During a cleanup wait: as with the bufferevent before, stop reading;
	 * session_resume() reads again and meets the EOF or error then, or
	 * starts a new timeout, as if it had not read meanwhile. */
	if (s->wait == W_CLEANUP) {
		session_read_off(s);
		return;
	}
	if (timeout) {
		session_timeout(s);
		return;
	}
	if (!s->closing)
		log_info("lost connection after %s from unknown[%s]",
		    state_names[s->state], s->addr);
	session_free(s);
}

/*
 * A plain session's socket is readable: one read() into a buffer the
 * whole daemon shares, no FIONREAD first (libevent's evbuffer_read asks
 * before every read). When nothing was waiting, the session's input just
 * refers to that buffer while it is used (a message's body is mostly
 * used at once, without a copy or an allocation); what is left is
 * copied before the next read. So nothing may move chains out of s->in
 * by reference (evbuffer_remove_buffer, evbuffer_add_buffer): they would
 * point into the next read. Input is only copied out or drained.
 */
static void
session_plain_read_cb(evutil_socket_t fd, short what, void *arg)
{
	static uint8_t buf[READ_MAX];
	struct session *s = arg;
	struct evbuffer *in = s->plain_in;
	size_t room = sizeof(buf), left;
	bool borrowed;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		session_plain_read_end(s, true);
		return;
	}
	/* While it waits, a session buffers READ_HIGH_WATER at most. */
	if (s->wait != W_NONE) {
		size_t len = evbuffer_get_length(in);

		if (len >= READ_HIGH_WATER) {
			session_read_off(s);
			return;
		}
		if (READ_HIGH_WATER - len < room)
			room = READ_HIGH_WATER - len;
	}
	n = read(fd, buf, room);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {
		session_plain_read_end(s, false);
		return;
	}
	borrowed = evbuffer_get_length(in) == 0;
	if (borrowed)
		evbuffer_add_reference(in, buf, (size_t)n, NULL, NULL);
	else
		evbuffer_add(in, buf, (size_t)n);
	session_input_arrived(s);
	/* The session is still there: it is freed only from the loop. */
	left = evbuffer_get_length(in);
	if (borrowed && left > 0) {
		/* Only the borrowed bytes can be in it: nothing else was read. */
		evbuffer_drain(in, left);
		evbuffer_add(in, buf + (size_t)n - left, left);
	}
	if (s->plain && s->reading && s->wait != W_NONE &&
	    left >= READ_HIGH_WATER)
		session_read_off(s);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct timeval now = { 0, 0 };

	(void)bev;
	if (s->closing)
		evtimer_add(s->ev_timer, &now);	/* free outside callbacks */
	else if (s->wait == W_OUTPUT)
		session_resume(s);		/* the replies are written */
}

/*
 * A client that pipelines commands and never reads the replies would make
 * them pile up here without end. Past OUTPUT_HIGH_WATER the session stops
 * reading until the bufferevent has written them all (session_write_cb);
 * the write timeout ends a client that never reads.
 */
static bool
session_output_full(struct session *s)
{
	if (evbuffer_get_length(s->replies) +
	    evbuffer_get_length(bufferevent_get_output(s->bev)) <
	    OUTPUT_HIGH_WATER)
		return false;
	session_flush_replies(s);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) <
	    OUTPUT_HIGH_WATER)
		return false;
	session_wait(s, W_OUTPUT);
	return true;
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		session_tls_done(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->closing) {
			session_free(s);
			return;
		}
		session_timeout(s);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		if (s->state == S_TLS_HANDSHAKE) {
			char buf[256];

			tls_error(s->bev, buf, sizeof(buf));
			log_info("TLS failed with unknown[%s]: %s", s->addr, buf);
		} else if (!s->closing) {
			log_info("lost connection after %s from unknown[%s]",
			    state_names[s->state], s->addr);
		}
	} else if ((what & BEV_EVENT_EOF) && !s->closing) {
		log_info("lost connection after %s from unknown[%s]",
		    state_names[s->state], s->addr);
	}
	session_free(s);
}

/*
 * Draining: a session with no transaction and nothing to answer is told
 * 421 now (RFC 5321 3.8) instead of holding the shutdown until its next
 * command; a session in a transaction hears it right after the final
 * reply. A command already in the buffer gets its 421 from smtp_command.
 */
static void
session_drain_if_idle(struct session *s)
{
	if (!smtpd.d.draining || s->closing || s->tx != NULL ||
	    s->wait != W_NONE || (s->state != S_HELO && s->state != S_READY) ||
	    evbuffer_get_length(s->in) > 0)
		return;
	session_reply(s, "421 4.3.2 %s Service shutting down, closing "
	    "transmission channel", smtpd.d.cfg->server.hostname);
	session_close_after_reply(s);
}

/* SIGTERM: idle sessions are told at once, the others after their
 * transaction (or at their next command). */
void
session_drain_all(void)
{
	struct session *s;

	LIST_FOREACH(s, &smtpd.sessions, link)
		session_drain_if_idle(s);
	if (smtpd.n_sessions == 0)
		daemon_exit(&smtpd.d);
}

static bool
is_our_domain(const char *domain, void *arg)
{
	(void)arg;
	return config_find_domain(smtpd.d.cfg, domain) != NULL;
}

/* Submission: every From: address must be in a configured domain. */
void
session_headers_done(struct session *s)
{
	struct transaction *tx = s->tx;

	if (tx->hdr_done || s->listener->cfg->mode == LISTEN_INBOUND)
		return;
	tx->hdr_done = true;
	if (header_check_from(tx->hdr ? tx->hdr : "", tx->hdr_len, is_our_domain,
	    NULL, tx->from_bad, sizeof(tx->from_bad)) == -1) {
		log_info("unknown[%s]: From: %s refused: domain not configured",
		    s->addr, tx->from_bad);
		tx->from_refused = true;
	}
	free(tx->hdr);
	tx->hdr = NULL;
}

/* Keeps the header block of a submission until its end, then checks it. */
static void
session_scan_headers(struct session *s, const uint8_t *p, size_t n)
{
	struct transaction *tx = s->tx;
	size_t room, from;

	if (tx->hdr_done || n == 0 || s->listener->cfg->mode == LISTEN_INBOUND)
		return;
	room = HEADER_SCAN_MAX - tx->hdr_len;
	if (n > room)
		n = room;
	tx->hdr = xrealloc(tx->hdr, tx->hdr_len + n + 1);
	memcpy(tx->hdr + tx->hdr_len, p, n);
	from = tx->hdr_len >= 3 ? tx->hdr_len - 3 : 0;
	tx->hdr_len += n;
	tx->hdr[tx->hdr_len] = '\0';
	if (tx->hdr_len >= 2 && memcmp(tx->hdr, "\r\n", 2) == 0) {
		tx->hdr_len = 0;	/* no header at all */
		session_headers_done(s);
		return;
	}
	for (size_t i = from; i + 4 <= tx->hdr_len; i++)
		if (memcmp(tx->hdr + i, "\r\n\r\n", 4) == 0) {
			tx->hdr_len = i + 2;
			session_headers_done(s);
			return;
		}
	/* A From: past the limit would go unchecked: refuse instead. */
	if (tx->hdr_len >= HEADER_SCAN_MAX) {
		tx->hdr_done = true;
		tx->from_refused = true;
		snprintf(tx->from_bad, sizeof(tx->from_bad),
		    "unchecked (header block over %d bytes)", HEADER_SCAN_MAX);
		log_info("unknown[%s]: header block over %d bytes refused",
		    s->addr, HEADER_SCAN_MAX);
		free(tx->hdr);
		tx->hdr = NULL;
	}
}

/* The message stream: DATA (dot-stuffed) or the current BDAT chunk. */
void
session_data_input(struct session *s)
{
	struct evbuffer *in = s->in;
	struct transaction *tx = s->tx;
	uint64_t limit = smtpd.d.cfg->server.message_size_limit;
	uint8_t out[DATA_CHUNK + 2];

	while (evbuffer_get_length(in) > 0 && !tx->reader.done) {
		struct evbuffer_iovec seg;
		size_t n, used, out_len;

		/* The first contiguous piece, decoded where it lies. */
		if (evbuffer_peek(in, 1, NULL, &seg, 1) < 1)
			break;
		n = seg.iov_len < DATA_CHUNK ? seg.iov_len : DATA_CHUNK;
		if (s->state == S_BDAT) {
			if (tx->bdat_left == 0)
				break;
			if (n > tx->bdat_left)
				n = (size_t)tx->bdat_left;
		}
		used = data_reader_feed(&tx->reader, seg.iov_base, n, out, &out_len);
		evbuffer_drain(in, used);
		if (s->state == S_BDAT)
			tx->bdat_left -= used;
		if (tx->reader.size > limit && !tx->too_big) {
			tx->too_big = true;
			log_info("unknown[%s]: message exceeds %llu bytes", s->addr,
			    (unsigned long long)limit);
		}
		session_scan_headers(s, out, out_len);
		/* Only a message that can still be accepted goes on to cleanup. */
		if (tx->begun && (tx->too_big || tx->reader.flags != 0 ||
		    tx->from_refused)) {
			cleanup_abort(s);
			tx->begun = false;
		}
		if (tx->begun && out_len > 0)
			cleanup_data(s, out, out_len);
		if (tx->begun && is_cleanup_full()) {
			struct timeval tv = { 0, 10 * 1000 };

			session_wait(s, W_BACKPRESSURE);
			evtimer_add(s->ev_timer, &tv);
			return;
		}
		if (s->state == S_BDAT && tx->bdat_left == 0)
			break;
	}
	if (s->state == S_DATA && tx->reader.done) {
		s->n_data++;
		session_enter_state(s, S_READY);
		smtp_message_end(s);
	} else if (s->state == S_BDAT && tx->bdat_left == 0) {
		session_enter_state(s, S_RCPT);
		smtp_bdat_chunk_end(s);
	}
}

void
session_cleanup_lost(struct session *s)
{
	if (s->tx == NULL)
		return;
	s->tx->lost = true;
	s->tx->begun = false;
	if (s->wait == W_CLEANUP)
		session_cleanup_reply(s, 451, "4.3.0",
		    "Queue temporarily unavailable, try again later", "");
}
