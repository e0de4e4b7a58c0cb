/*
 * session.c - the SMTP client of tern-smtp as an explicit state machine:
 * one connection to one remote server, the greeting, EHLO (HELO as
 * fallback), STARTTLS per [delivery] tls, then transactions (MAIL, RCPT,
 * DATA; pipelined when offered) for one job after another, RSET after an
 * aborted one, QUIT at the end. Every reply goes through the bounded
 * parser; a malformed reply, a timeout or a lost connection defers what
 * is undecided, never more.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "session.h"
#include "smtp.h"
#include "util.h"

/* Diagnostic texts are bounded and cut on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

const char *const state_names[] = {
	[SS_CONNECTING] = "connect", [SS_GREETING] = "greeting",
	[SS_EHLO] = "EHLO", [SS_HELO] = "HELO", [SS_STARTTLS] = "STARTTLS",
	[SS_HANDSHAKE] = "TLS handshake", [SS_IDLE] = "idle",
	[SS_MAIL] = "MAIL FROM", [SS_DATA] = "DATA",
	[SS_CONTENT] = "end of data", [SS_DOT] = "end of data",
	[SS_DATA_VOID] = "DATA",
	[SS_RSET] = "RSET", [SS_QUIT] = "QUIT",
};

static void session_connect_next(struct session *s);
static void session_timer_cb(evutil_socket_t fd, short what, void *arg);

/* ---- small helpers ---- */

void
session_set_state(struct session *s, enum session_state st)
{
	log_debug("%s[%s]: %s -> %s", s->targets[s->target].host,
	    s->targets[s->target].addr, state_names[s->state], state_names[st]);
	s->state = st;
}

void
session_timer(struct session *s, int64_t secs)
{
	struct timeval tv = { secs, 0 };

	evtimer_add(s->ev_timer, &tv);
}

void
session_flush_soon(struct session *s)
{
	if (s->ssl == NULL)
		event_active(s->ev_flush, EV_WRITE, 0);
}

/* Writes what a plain session queued in this turn (see ev_flush). */
static void
session_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct evbuffer *out;

	(void)fd;
	(void)what;
	if (s->bev == NULL || s->ssl != NULL ||
	    (bufferevent_get_enabled(s->bev) & EV_WRITE))
		return;		/* gone, TLS, or the bufferevent is writing */
	out = bufferevent_get_output(s->bev);
	if (evbuffer_get_length(out) == 0)
		return;
	(void)evbuffer_write(out, bufferevent_getfd(s->bev));
	if (evbuffer_get_length(out) > 0)
		bufferevent_enable(s->bev, EV_WRITE);	/* the rest, or the error */
	else if (s->state == SS_CONTENT)
		session_content_fill(s);	/* what the write callback would do */
}

void
session_write(struct session *s, const char *line)
{
	bufferevent_write(s->bev, line, strlen(line));
	session_flush_soon(s);
}

void
session_printf(struct session *s, const char *fmt, ...) TERN_PRINTF(2, 3);

void
session_printf(struct session *s, const char *fmt, ...)
{
	va_list ap;
	char *line;

	va_start(ap, fmt);
	line = xvasprintf(fmt, ap);
	va_end(ap);
	session_write(s, line);
	free(line);
}

const struct mx_target *
session_target(const struct session *s)
{
	return &s->targets[s->target];
}

void
cmds_clear(struct session *s)
{
	for (size_t i = 0; i < s->n_cmds; i++)
		free(s->cmds[i].line);
	free(s->cmds);
	s->cmds = NULL;
	s->n_cmds = s->n_sent = s->n_replied = 0;
}

uint8_t
session_stage(const struct session *s)
{
	switch (s->state) {
	case SS_CONNECTING:
	case SS_GREETING:
		return DELIVERY_STAGE_CONNECT;
	case SS_EHLO:
	case SS_HELO:
		return DELIVERY_STAGE_HELO;
	case SS_STARTTLS:
	case SS_HANDSHAKE:
		return DELIVERY_STAGE_STARTTLS;
	case SS_MAIL:
		return DELIVERY_STAGE_MAIL;
	case SS_DATA:
	case SS_CONTENT:
	case SS_DATA_VOID:
		return DELIVERY_STAGE_DATA;
	case SS_DOT:
		return DELIVERY_STAGE_DOT;
	case SS_IDLE:
	case SS_RSET:
	case SS_QUIT:
		break;
	}
	return DELIVERY_STAGE_NONE;
}

/* Closes the connection (not the session). */
static void
session_disconnect(struct session *s)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
		agent.n_sessions--;
	}
	s->ssl = NULL;		/* freed with the filter */
	evtimer_del(s->ev_timer);
	smtp_reply_parser_reset(&s->parser);
	s->esmtp = s->pipelining = s->starttls = false;
	s->eightbitmime = s->smtputf8 = s->dsn = s->size = false;
	s->size_limit = 0;
	s->tls = false;
	s->tls_desc[0] = '\0';
	s->n_msgs = 0;
	s->established = false;
	cmds_clear(s);
}

/* Frees the session now, or at the end of the running callback. */
static void
session_free(struct session *s)
{
	struct dest *d = s->dest;

	session_disconnect(s);
	if (s->in_read) {
		s->dead = true;
		return;
	}
	event_free(s->ev_timer);
	event_free(s->ev_flush);
	free(s->targets);
	dest_session_gone(d, s);
	free(s);
}

/* The status to report for a reply: its own, else one of its class. */
void
reply_status(const struct smtp_reply *r, char *status, size_t size)
{
	if (r->status[0] != '\0')
		tern_strlcpy(status, r->status, size);
	else
		snprintf(status, size, "%u.0.0", r->code / 100);
}

/* "host mx[ip] said: 550 5.1.1 ... (in reply to RCPT TO command)" */
void
reply_diag(const struct session *s, const struct smtp_reply *r,
    const char *cmd, char *buf, size_t size)
{
	char text[SMTP_REPLY_TEXT_MAX + 16];

	smtp_reply_format(r, text, sizeof(text));
	snprintf(buf, size, "host %s[%s] said: %s (in reply to %s command)",
	    session_target(s)->host, session_target(s)->addr, text, cmd);
}

/* ---- failures ---- */

/* This target did not work out: remember why and try the next. */
void
session_target_failed(struct session *s, const char *status, const char *fmt,
    ...) TERN_PRINTF(3, 4);

void
session_target_failed(struct session *s, const char *status, const char *fmt,
    ...)
{
	va_list ap;

	s->last_stage = session_stage(s);
	tern_strlcpy(s->last_status, status, sizeof(s->last_status));
	va_start(ap, fmt);
	vsnprintf(s->last_text, sizeof(s->last_text), fmt, ap);
	va_end(ap);
	log_info("%s: %s", s->job ? s->job->qid_text : "-", s->last_text);
	if (s->bev != NULL && s->state != SS_CONNECTING &&
	    s->state != SS_HANDSHAKE) {
		/* Be polite, but do not wait for the answer. */
		session_write(s, "QUIT\r\n");
		bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
	}
	session_disconnect(s);
	s->target++;
	s->tls_failed = false;
	session_connect_next(s);
}

/*
 * The connection broke (lost, timed out, malformed reply). What is
 * undecided is deferred; before the transaction, the next target is
 * tried; a cached connection that died before its first reply is
 * replaced by a fresh one once.
 */
void
session_broken(struct session *s, const char *status, const char *fmt, ...)
    TERN_PRINTF(3, 4);

void
session_broken(struct session *s, const char *status, const char *fmt, ...)
{
	char why[RESULT_TEXT_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	switch (s->state) {
	case SS_CONNECTING:
	case SS_GREETING:
	case SS_EHLO:
	case SS_HELO:
	case SS_STARTTLS:
	case SS_HANDSHAKE:
		if (s->job == NULL) {
			session_free(s);
			return;
		}
		session_target_failed(s, status, "%s", why);
		return;
	case SS_IDLE:
	case SS_RSET:
	case SS_QUIT:
		log_debug("%s[%s]: %s", session_target(s)->host,
		    session_target(s)->addr, why);
		session_free(s);
		return;
	case SS_MAIL:
	case SS_DATA:
	case SS_CONTENT:
	case SS_DOT:
	case SS_DATA_VOID:
		break;
	}
	if (s->n_msgs > 0 && !s->got_txn_reply && !s->fresh_retry_done &&
	    s->state == SS_MAIL) {
		/* The cached connection had died while idle. */
		log_debug("%s: cached connection to %s[%s] failed (%s): "
		    "reconnecting", s->job->qid_text, session_target(s)->host,
		    session_target(s)->addr, why);
		s->fresh_retry_done = true;
		for (size_t i = 0; i < s->job->n_rcpts; i++)
			s->job->rcpts[i].accepted = false;
		session_disconnect(s);
		s->target = 0;
		session_connect_next(s);
		return;
	}
	job_fail_rest(s->job, session_stage(s), 0, status, why);
	job_finish(s->job);
	s->job = NULL;
	session_free(s);
}

/* Every target failed: the job is deferred with the last reason. */
static void
session_give_up(struct session *s)
{
	struct dest *d = s->dest;
	char status[16];
	char text[RESULT_TEXT_MAX];
	uint8_t stage;

	if (s->job == NULL) {
		session_free(s);
		return;
	}
	tern_strlcpy(status, s->last_status[0] ? s->last_status : "4.4.1",
	    sizeof(status));
	/* A refusal before the transaction is never a bounce. */
	status[0] = '4';
	tern_strlcpy(text, s->last_text[0] ? s->last_text : "no server to try",
	    sizeof(text));
	stage = s->last_text[0] ? s->last_stage : DELIVERY_STAGE_NONE;
	job_fail_rest(s->job, stage, 0, status, text);
	job_finish(s->job);
	s->job = NULL;
	dest_session_failed(d, stage, status, text);
	session_free(s);
}

/* ---- connecting ---- */


static void
session_connect_next(struct session *s)
{
	const struct mx_target *t;

	if (s->target >= s->n_targets) {
		session_give_up(s);
		return;
	}
	t = session_target(s);
	s->bev = bufferevent_socket_new(agent.d.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL)
		log_fatal("bufferevent_socket_new failed");
	agent.n_sessions++;
	s->state = SS_CONNECTING;
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	session_timer(s, agent.cfg->delivery.connect_timeout);
	if (s->job != NULL) {
		tern_strlcpy(s->job->relay_host, t->host,
		    sizeof(s->job->relay_host));
		tern_strlcpy(s->job->relay_addr, t->addr,
		    sizeof(s->job->relay_addr));
		s->job->relay_port = agent.cfg->delivery.smtp_port;
	}
	if (bufferevent_socket_connect(s->bev, (const struct sockaddr *)&t->ss,
	    (int)t->sslen) == -1)
		session_target_failed(s, "4.4.1", "connect to %s[%s]:%u: %s",
		    t->host, t->addr, agent.cfg->delivery.smtp_port,
		    strerror(errno));
	else
		fd_set_tcp_nodelay(bufferevent_getfd(s->bev));
}

/*
 * Hosts of equal preference are tried in random order (RFC 5321 5.1):
 * shuffled per connection, so the load spreads even when many
 * connections share one MX look-up. A host's addresses stay together.
 */
static void
targets_shuffle_equal(struct mx_target *t, size_t n)
{
	size_t start = 0;

	while (start < n) {
		size_t end = start, n_hosts = 0, k;
		size_t first[MX_HOSTS_MAX + 1];
		struct mx_target *copy;

		while (end < n && t[end].pref == t[start].pref) {
			if ((end == start || strcmp(t[end].host, t[end - 1].host) != 0)
			    && n_hosts < MX_HOSTS_MAX)
				first[n_hosts++] = end;
			end++;
		}
		first[n_hosts] = end;
		if (n_hosts > 1) {
			size_t order[MX_HOSTS_MAX];

			for (k = 0; k < n_hosts; k++)
				order[k] = k;
			for (k = n_hosts - 1; k > 0; k--) {
				size_t r = arc4random_uniform((uint32_t)k + 1), tmp;

				tmp = order[k];
				order[k] = order[r];
				order[r] = tmp;
			}
			copy = xreallocarray(NULL, end - start, sizeof(*copy));
			memcpy(copy, &t[start], (end - start) * sizeof(*copy));
			size_t out = start;
			for (k = 0; k < n_hosts; k++) {
				size_t h = order[k];
				size_t len = first[h + 1] - first[h];

				memcpy(&t[out], &copy[first[h] - start], len * sizeof(*t));
				out += len;
			}
			free(copy);
		}
		start = end;
	}
}

void
session_start(struct dest *d, struct job *j)
{
	const struct mx_result *mx = dest_targets(d);
	struct session *s = xcalloc(1, sizeof(*s));

	s->dest = d;
	s->job = j;
	j->t_session = tern_monotonic_usec();
	s->n_targets = mx->n_targets;
	s->targets = xreallocarray(NULL, mx->n_targets, sizeof(*s->targets));
	memcpy(s->targets, mx->targets, mx->n_targets * sizeof(*s->targets));
	targets_shuffle_equal(s->targets, s->n_targets);
	s->ev_timer = evtimer_new(agent.d.base, session_timer_cb, s);
	s->ev_flush = event_new(agent.d.base, -1, 0, session_flush_cb, s);
	if (s->ev_timer == NULL || s->ev_flush == NULL)
		log_fatal("evtimer_new failed");
	smtp_reply_parser_reset(&s->parser);
	/* Registered first: a connect that fails at once frees the session. */
	dest_session_add(d, s);
	session_connect_next(s);
}

/* ---- the greeting and EHLO ---- */

void
session_send_ehlo(struct session *s)
{
	session_set_state(s, SS_EHLO);
	session_printf(s, "EHLO %s\r\n", agent.helo_name);
	session_timer(s, agent.cfg->delivery.command_timeout);
}

static void
session_parse_ehlo(struct session *s, const struct smtp_reply *r)
{
	const char *p = strchr(r->text, '\n');

	s->esmtp = true;
	while (p != NULL) {
		const char *line = p + 1, *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char kw[64];
		size_t n = 0;

		while (n < len && n < sizeof(kw) - 1 && line[n] != ' ' &&
		    line[n] != '=')
			n++;
		memcpy(kw, line, n);
		kw[n] = '\0';
		if (is_ascii_strcaseeq(kw, "PIPELINING"))
			s->pipelining = true;
		else if (is_ascii_strcaseeq(kw, "STARTTLS"))
			s->starttls = true;
		else if (is_ascii_strcaseeq(kw, "8BITMIME"))
			s->eightbitmime = true;
		else if (is_ascii_strcaseeq(kw, "SMTPUTF8"))
			s->smtputf8 = true;
		else if (is_ascii_strcaseeq(kw, "DSN"))
			s->dsn = true;
		else if (is_ascii_strcaseeq(kw, "SIZE")) {
			char num[32];

			s->size = true;
			size_t k = 0;
			uint64_t v;

			while (n < len && line[n] == ' ')
				n++;
			while (n < len && k < sizeof(num) - 1)
				num[k++] = line[n++];
			num[k] = '\0';
			if (k > 0 && parse_uint64(num, UINT64_MAX, &v) == 0)
				s->size_limit = v;
		}
		p = end;
	}
}

/* EHLO or HELO done: STARTTLS, or ready for mail. */
static void
session_after_helo(struct session *s)
{
	enum tls_policy pol = agent.cfg->delivery.tls;
	const struct mx_target *t = session_target(s);

	if (!s->tls && pol != TLS_POLICY_NONE && s->starttls && !s->tls_failed) {
		session_set_state(s, SS_STARTTLS);
		session_write(s, "STARTTLS\r\n");
		session_timer(s, agent.cfg->delivery.command_timeout);
		return;
	}
	if (!s->tls && pol == TLS_POLICY_REQUIRED) {
		session_target_failed(s, "4.7.4", "TLS is required, but %s by "
		    "host %s[%s]", s->tls_failed ? "the handshake failed" :
		    "was not offered", t->host, t->addr);
		return;
	}
	if (s->job != NULL)
		s->job->t_ready = tern_monotonic_usec();
	if (!s->established) {
		s->established = true;
		dest_session_established(s->dest);
	}
	session_start_txn(s);
}

/* ---- after a job; idle; QUIT ---- */

static void
session_idle_timeout(struct session *s)
{
	session_quit(s);
}

/* The job's transaction is over (or never started): results out, next. */
void
session_after_job(struct session *s)
{
	bool need_rset = s->state == SS_MAIL || s->state == SS_DATA;
	struct job *next;

	if (s->job != NULL) {
		job_finish(s->job);
		s->job = NULL;
	}
	cmds_clear(s);
	if (s->n_msgs >= agent.cfg->delivery.max_messages_per_connection ||
	    agent.d.draining) {
		session_quit(s);
		return;
	}
	if (need_rset) {
		session_set_state(s, SS_RSET);
		session_write(s, "RSET\r\n");
		session_timer(s, agent.cfg->delivery.command_timeout);
		return;
	}
	next = dest_next_job(s->dest);
	if (next != NULL) {
		session_take_job(s, next);
		return;
	}
	if (agent.cfg->delivery.connection_idle_timeout == 0) {
		session_quit(s);
		return;
	}
	session_set_state(s, SS_IDLE);
	session_timer(s, agent.cfg->delivery.connection_idle_timeout);
}

bool
session_is_established(const struct session *s)
{
	return s->established;
}

bool
session_is_idle(const struct session *s)
{
	return s->state == SS_IDLE && s->job == NULL && s->bev != NULL;
}

void
session_take_job(struct session *s, struct job *j)
{
	s->job = j;
	j->t_session = j->t_ready = tern_monotonic_usec();
	tern_strlcpy(j->relay_host, session_target(s)->host,
	    sizeof(j->relay_host));
	tern_strlcpy(j->relay_addr, session_target(s)->addr,
	    sizeof(j->relay_addr));
	j->relay_port = agent.cfg->delivery.smtp_port;
	j->connected = true;
	s->fresh_retry_done = false;
	evtimer_del(s->ev_timer);
	session_start_txn(s);
}

void
session_quit(struct session *s)
{
	if (s->bev == NULL) {
		session_free(s);
		return;
	}
	session_set_state(s, SS_QUIT);
	session_write(s, "QUIT\r\n");
	session_timer(s, QUIT_TIMEOUT_SEC);
}

/* ---- replies ---- */

/* One complete reply in the current state. */
static void
session_reply(struct session *s, const struct smtp_reply *r)
{
	const struct mx_target *t = session_target(s);
	char diag[RESULT_TEXT_MAX], status[16];

	log_debug("%s[%s]: < %u %s", t->host, t->addr, r->code, r->text);
	switch (s->state) {
	case SS_GREETING:
		if (r->code / 100 != 2) {
			reply_status(r, status, sizeof(status));
			reply_diag(s, r, "initial greeting", diag, sizeof(diag));
			session_target_failed(s, status, "%s", diag);
			return;
		}
		if (s->job != NULL)
			s->job->connected = true;
		session_send_ehlo(s);
		return;
	case SS_EHLO:
		if (r->code / 100 == 2) {
			session_parse_ehlo(s, r);
			session_after_helo(s);
		} else if (r->code / 100 == 5 && !s->tls) {
			session_set_state(s, SS_HELO);
			session_printf(s, "HELO %s\r\n", agent.helo_name);
			session_timer(s, agent.cfg->delivery.command_timeout);
		} else {
			reply_status(r, status, sizeof(status));
			reply_diag(s, r, "EHLO", diag, sizeof(diag));
			session_target_failed(s, status, "%s", diag);
		}
		return;
	case SS_HELO:
		if (r->code / 100 != 2) {
			reply_status(r, status, sizeof(status));
			reply_diag(s, r, "HELO", diag, sizeof(diag));
			session_target_failed(s, status, "%s", diag);
			return;
		}
		session_after_helo(s);
		return;
	case SS_STARTTLS:
		if (r->code == 220) {
			session_start_tls(s);
			return;
		}
		if (agent.cfg->delivery.tls == TLS_POLICY_REQUIRED) {
			reply_diag(s, r, "STARTTLS", diag, sizeof(diag));
			session_target_failed(s, "4.7.4", "TLS is required, but %s",
			    diag);
			return;
		}
		/* Opportunistic: STARTTLS refused, go on in clear. */
		s->starttls = false;
		session_after_helo(s);
		return;
	case SS_MAIL:
		s->got_txn_reply = true;
		session_mail_reply(s, r);
		return;
	case SS_DATA:
		if (r->code == 354) {
			session_set_state(s, SS_CONTENT);
			dot_state_init(&s->dot);
			s->next_chunk = 0;
			bufferevent_setwatermark(s->bev, EV_WRITE, CONTENT_LOW_WATER, 0);
			session_timer(s, agent.cfg->delivery.data_timeout);
			session_content_fill(s);
			return;
		}
		session_result_accepted(s, r, DELIVERY_STAGE_DATA);
		s->n_msgs++;
		session_after_job(s);
		return;
	case SS_DATA_VOID:
		if (r->code == 354 && !s->void_dot_sent) {
			session_write(s, ".\r\n");
			s->void_dot_sent = true;
			session_timer(s, agent.cfg->delivery.data_timeout);
			return;
		}
		/* The results are in; RSET, as after any failed MAIL phase. */
		session_set_state(s, SS_MAIL);
		session_after_job(s);
		return;
	case SS_DOT:
		bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
		session_result_accepted(s, r, DELIVERY_STAGE_DOT);
		s->n_msgs++;
		session_after_job(s);
		return;
	case SS_RSET:
		if (r->code / 100 != 2) {
			session_quit(s);
			return;
		}
		session_set_state(s, SS_IDLE);
		session_after_job(s);
		return;
	case SS_QUIT:
		session_free(s);
		return;
	case SS_IDLE:
		/* A server may say 421 before it hangs up an idle connection. */
		session_free(s);
		return;
	case SS_CONTENT:
		/* A reply before the dot: the server gave up on the message. */
		reply_diag(s, r, "DATA", diag, sizeof(diag));
		session_broken(s, "4.5.0", "%s", diag);
		return;
	case SS_CONNECTING:
	case SS_HANDSHAKE:
		session_broken(s, "4.5.0", "unexpected data from %s[%s]", t->host,
		    t->addr);
		return;
	}
}

void
session_read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	s->in_read = true;
	while (!s->dead && s->bev == bev && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		enum smtp_reply_result res;
		size_t used = 0;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		res = smtp_reply_feed(&s->parser, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (res == SMTP_REPLY_MORE)
			continue;
		if (res == SMTP_REPLY_BAD) {
			const struct mx_target *t = session_target(s);

			session_broken(s, "4.5.0", "malformed reply from %s[%s] "
			    "while in %s: %s", t->host, t->addr,
			    state_names[s->state], s->parser.reply.why);
			break;
		}
		session_reply(s, &s->parser.reply);
		/* After STARTTLS the plain input was discarded and bev replaced. */
	}
	s->in_read = false;
	if (s->dead) {
		s->dead = false;
		session_free(s);
	}
}

void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == SS_CONTENT)
		session_content_fill(s);
	else if (s->ssl == NULL && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);	/* back to ev_flush */
}

void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	const struct mx_target *t = session_target(s);
	char err[256] = "";
	unsigned long e;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SS_CONNECTING) {
			session_set_state(s, SS_GREETING);
			/* Plain: EV_WRITE (on by default) only when the socket
			 * is full, see ev_flush. */
			if (s->ssl == NULL) {
				bufferevent_disable(s->bev, EV_WRITE);
				bufferevent_enable(s->bev, EV_READ);
			} else {
				bufferevent_enable(s->bev, EV_READ | EV_WRITE);
			}
			session_timer(s, agent.cfg->delivery.command_timeout);
		} else if (s->state == SS_HANDSHAKE)
			session_tls_done(s);
		return;
	}
	if (s->state == SS_QUIT) {
		session_free(s);
		return;
	}
	if (s->ssl != NULL && (e = bufferevent_get_openssl_error(s->bev)) != 0)
		ERR_error_string_n(e, err, sizeof(err));
	else if (what & BEV_EVENT_ERROR)
		snprintf(err, sizeof(err), "%s", strerror(EVUTIL_SOCKET_ERROR()));
	if (s->state == SS_HANDSHAKE) {
		if (agent.cfg->delivery.tls != TLS_POLICY_REQUIRED && s->job) {
			/* Opportunistic: the same server once more, in clear. */
			log_info("%s: TLS handshake with %s[%s] failed (%s): trying "
			    "again without TLS", s->job->qid_text, t->host, t->addr,
			    err);
			session_disconnect(s);
			s->tls_failed = true;
			session_connect_next(s);
			return;
		}
		session_broken(s, "4.7.5", "TLS handshake with %s[%s] failed: %s",
		    t->host, t->addr, err);
		return;
	}
	if (s->state == SS_CONNECTING) {
		session_broken(s, "4.4.1", "connect to %s[%s]:%u: %s", t->host,
		    t->addr, agent.cfg->delivery.smtp_port,
		    err[0] ? err : "connection failed");
		return;
	}
	session_broken(s, s->state == SS_GREETING ? "4.4.2" : "4.4.2",
	    "lost connection with %s[%s] while %s%s%s", t->host, t->addr,
	    s->state == SS_DOT ? "waiting for the reply to end of data "
	    "(the message may have been delivered)" : state_names[s->state],
	    err[0] ? ": " : "", err);
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	const struct mx_target *t = session_target(s);

	(void)fd;
	(void)what;
	switch (s->state) {
	case SS_IDLE:
		session_idle_timeout(s);
		return;
	case SS_QUIT:
		session_free(s);
		return;
	case SS_CONNECTING:
		session_broken(s, "4.4.1", "connect to %s[%s]:%u: timed out",
		    t->host, t->addr, agent.cfg->delivery.smtp_port);
		return;
	default:
		session_broken(s, "4.4.2", "conversation with %s[%s] timed out "
		    "while %s", t->host, t->addr, state_names[s->state]);
		return;
	}
}
