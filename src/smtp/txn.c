/*
 * txn.c - one SMTP transaction of tern-smtp's client: MAIL FROM with
 * SIZE, BODY, SMTPUTF8 and DSN parameters, one RCPT per recipient
 * (pipelined when offered), DATA and the content streamed from the queue
 * dot-stuffed, and the per-recipient outcome of every reply.
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


/* xtext (RFC 3461): "+" and "=" and what is not printable as +HH. */
static char *
xtext(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(n * 3 + 1), *o = out;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 33 || c > 126 || c == '+' || c == '=')
			o += sprintf(o, "+%02X", c);
		else
			*o++ = (char)c;
	}
	*o = '\0';
	return out;
}

/* Nothing from the queue may carry a line end or a control byte into a
 * command. */
static bool
is_command_safe(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static void
cmd_add(struct session *s, enum cmd_kind kind, size_t rcpt, char *line)
{
	s->cmds = xreallocarray(s->cmds, s->n_cmds + 1, sizeof(*s->cmds));
	s->cmds[s->n_cmds].kind = kind;
	s->cmds[s->n_cmds].rcpt = rcpt;
	s->cmds[s->n_cmds].line = line;
	s->n_cmds++;
}

/* Sends what may go now: everything with PIPELINING, else one at a time. */
static void
cmds_pump(struct session *s)
{
	while (s->n_sent < s->n_cmds && (s->pipelining ||
	    (s->n_sent == s->n_replied && !s->mail_failed))) {
		session_write(s, s->cmds[s->n_sent].line);
		s->n_sent++;
	}
	session_timer(s, agent.cfg->delivery.command_timeout);
}

void
session_start_txn(struct session *s)
{
	struct job *j = s->job;
	char *params, *mail;

	if (j == NULL) {
		session_after_job(s);
		return;
	}
	cmds_clear(s);
	s->mail_failed = false;
	s->data_sent = false;
	s->void_dot_sent = false;
	s->got_txn_reply = false;
	s->n_accepted = 0;
	tern_strlcpy(j->tls, s->tls_desc, sizeof(j->tls));
	j->reused = s->n_msgs > 0;
	if (!is_command_safe(j->sender) || !is_command_safe(j->envid)) {
		job_fail_rest(j, DELIVERY_STAGE_NONE, 0, "5.1.7", "envelope "
		    "sender has control characters");
		session_after_job(s);
		return;
	}
	if (s->size_limit > 0 && j->size > s->size_limit) {
		char text[300];

		snprintf(text, sizeof(text), "message size %llu exceeds size "
		    "limit %llu of server %s[%s]", (unsigned long long)j->size,
		    (unsigned long long)s->size_limit, session_target(s)->host,
		    session_target(s)->addr);
		job_fail_rest(j, DELIVERY_STAGE_NONE, 0, "5.3.4", text);
		session_after_job(s);
		return;
	}
	if (j->smtputf8 && !s->smtputf8) {
		job_fail_rest(j, DELIVERY_STAGE_NONE, 0, "5.6.7", "SMTPUTF8 is "
		    "required, but was not offered by the server");
		session_after_job(s);
		return;
	}
	if (j->body == CLEANUP_BODY_BINARYMIME) {
		/* BINARYMIME needs BDAT (RFC 3030), which we do not speak. */
		job_fail_rest(j, DELIVERY_STAGE_NONE, 0, "4.6.3", "binary message "
		    "(BINARYMIME), but this delivery agent does not send BDAT");
		session_after_job(s);
		return;
	}
	if (j->body != CLEANUP_BODY_7BIT && !s->eightbitmime) {
		/* RFC 6152: never send 8-bit data to a server that did not
		 * ask for it; another server (or a later try) may take it. */
		job_fail_rest(j, DELIVERY_STAGE_NONE, 0, "4.6.3", "8-bit message, "
		    "but the server does not offer 8BITMIME");
		session_after_job(s);
		return;
	}
	params = xstrdup("");
#define ADD_PARAM(...) do { char *t_ = xasprintf(__VA_ARGS__); \
	char *n_ = xasprintf("%s%s", params, t_); free(t_); free(params); \
	params = n_; } while (0)
	if (s->size)
		ADD_PARAM(" SIZE=%llu", (unsigned long long)j->size);
	if (j->body != CLEANUP_BODY_7BIT)
		ADD_PARAM(" BODY=8BITMIME");
	if (j->smtputf8)
		ADD_PARAM(" SMTPUTF8");
	if (s->dsn && j->ret != CLEANUP_RET_DEFAULT)
		ADD_PARAM(" RET=%s", j->ret == CLEANUP_RET_FULL ? "FULL" : "HDRS");
	if (s->dsn && j->envid[0] != '\0') {
		char *x = xtext(j->envid);

		ADD_PARAM(" ENVID=%s", x);
		free(x);
	}
	mail = xasprintf("MAIL FROM:<%s>%s\r\n", j->sender, params);
	free(params);
	cmd_add(s, CMD_MAIL, 0, mail);
	for (size_t i = 0; i < j->n_rcpts; i++) {
		struct job_rcpt *r = &j->rcpts[i];

		r->accepted = false;
		if (r->done)
			continue;
		if (!is_command_safe(r->address) || !is_command_safe(r->orcpt)) {
			job_rcpt_result(j, r, DELIVERY_STAGE_NONE, 0, "5.1.3",
			    "recipient address has control characters");
			continue;
		}
		params = xstrdup("");
		if (s->dsn && (r->notify & (CLEANUP_NOTIFY_SUCCESS |
		    CLEANUP_NOTIFY_FAILURE | CLEANUP_NOTIFY_DELAY |
		    CLEANUP_NOTIFY_NEVER)) != 0) {
			if (r->notify & CLEANUP_NOTIFY_NEVER)
				ADD_PARAM(" NOTIFY=NEVER");
			else
				ADD_PARAM(" NOTIFY=%s%s%s",
				    r->notify & CLEANUP_NOTIFY_SUCCESS ? "SUCCESS," : "",
				    r->notify & CLEANUP_NOTIFY_FAILURE ? "FAILURE," : "",
				    r->notify & CLEANUP_NOTIFY_DELAY ? "DELAY," : "");
			/* drop the trailing comma */
			if (params[strlen(params) - 1] == ',')
				params[strlen(params) - 1] = '\0';
		}
		if (s->dsn && has_ascii_prefix_ci(r->orcpt, "rfc822;")) {
			char *x = xtext(r->orcpt + 7);

			ADD_PARAM(" ORCPT=rfc822;%s", x);
			free(x);
		}
		cmd_add(s, CMD_RCPT, i, xasprintf("RCPT TO:<%s>%s\r\n", r->address,
		    params));
		free(params);
	}
#undef ADD_PARAM
	if (s->n_cmds == 1) {
		/* Nobody left to send to. */
		cmds_clear(s);
		session_after_job(s);
		return;
	}
	session_set_state(s, SS_MAIL);
	cmds_pump(s);
	/* RFC 2920 3.1: DATA may end the group; it saves a round trip per
	 * message. Its reply comes after those to MAIL and the RCPTs. */
	if (s->pipelining) {
		session_write(s, "DATA\r\n");
		s->data_sent = true;
	}
}

static void
session_send_data(struct session *s)
{
	session_set_state(s, SS_DATA);
	session_write(s, "DATA\r\n");
	session_timer(s, agent.cfg->delivery.command_timeout);
}

/* A reply during MAIL/RCPT. */
void
session_mail_reply(struct session *s, const struct smtp_reply *r)
{
	struct job *j = s->job;
	struct cmd *c;
	char status[16], diag[RESULT_TEXT_MAX];

	if (s->n_replied >= s->n_sent) {
		session_broken(s, "4.5.0", "unexpected reply from %s[%s] in the "
		    "MAIL FROM phase", session_target(s)->host,
		    session_target(s)->addr);
		return;
	}
	c = &s->cmds[s->n_replied++];
	reply_status(r, status, sizeof(status));
	if (c->kind == CMD_MAIL) {
		if (r->code / 100 != 2) {
			reply_diag(s, r, "MAIL FROM", diag, sizeof(diag));
			s->mail_failed = true;
			/* Every recipient of the transaction shares its fate. */
			for (size_t i = 0; i < s->n_cmds; i++)
				if (s->cmds[i].kind == CMD_RCPT)
					job_rcpt_result(j, &j->rcpts[s->cmds[i].rcpt],
					    DELIVERY_STAGE_MAIL, (uint16_t)r->code,
					    status, diag);
		}
	} else if (!s->mail_failed) {
		struct job_rcpt *rc = &j->rcpts[c->rcpt];

		if (r->code / 100 == 2) {
			rc->accepted = true;
			s->n_accepted++;
		} else {
			reply_diag(s, r, "RCPT TO", diag, sizeof(diag));
			job_rcpt_result(j, rc, DELIVERY_STAGE_RCPT,
			    (uint16_t)r->code, status, diag);
		}
	}
	/* Without PIPELINING, no RCPT follows a refused MAIL. */
	if (s->n_replied < (s->mail_failed && !s->pipelining ? s->n_sent :
	    s->n_cmds)) {
		cmds_pump(s);
		return;
	}
	if (s->mail_failed || s->n_accepted == 0) {
		s->n_msgs++;
		if (s->data_sent) {
			session_set_state(s, SS_DATA_VOID);
			session_timer(s, agent.cfg->delivery.command_timeout);
			return;
		}
		session_after_job(s);
		return;
	}
	if (s->data_sent) {
		session_set_state(s, SS_DATA);
		session_timer(s, agent.cfg->delivery.command_timeout);
		return;
	}
	session_send_data(s);
}

/* Applies a reply to every accepted recipient. */
void
session_result_accepted(struct session *s, const struct smtp_reply *r,
    uint8_t stage)
{
	const char *cmd = stage == DELIVERY_STAGE_DOT ? "end of DATA" : "DATA";
	struct job *j = s->job;
	char status[16], diag[RESULT_TEXT_MAX];

	reply_status(r, status, sizeof(status));
	if (r->code / 100 == 2)
		smtp_reply_format(r, diag, sizeof(diag));
	else
		reply_diag(s, r, cmd, diag, sizeof(diag));
	for (size_t i = 0; i < j->n_rcpts; i++)
		if (j->rcpts[i].accepted)
			job_rcpt_result(j, &j->rcpts[i], stage,
			    (uint16_t)r->code, status, diag);
}

static int
content_chunk_cb(void *arg, uint32_t index, const void *data, size_t len)
{
	struct session *s = arg;

	(void)index;
	dot_stuff(&s->dot, data, len, bufferevent_get_output(s->bev));
	return 0;
}

/* Streams content while the socket takes it; the dot at the end. */
void
session_content_fill(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	struct job *j = s->job;

	while (evbuffer_get_length(out) < CONTENT_HIGH_WATER) {
		uint32_t n = 0;

		if (agent.queue == NULL || queue_content_read(agent.queue, j->qid,
		    s->next_chunk, CONTENT_CHUNKS_PER_READ, content_chunk_cb, s,
		    &n) == -1) {
			/* The message is gone or unreadable: the server must not
			 * get a truncated message, so no dot; just go. */
			log_warn("%s: cannot read the message content: %s",
			    j->qid_text, agent.queue ? queue_strerror(
			    queue_last_error()) : "queue not open");
			session_broken(s, "4.3.0", "cannot read the message "
			    "content from the queue");
			return;
		}
		s->next_chunk += n;
		if (n < CONTENT_CHUNKS_PER_READ)
			break;
	}
	/* The server is taking data: the timeout counts from the last
	 * progress, not from the 354. */
	session_timer(s, agent.cfg->delivery.data_timeout);
	if (evbuffer_get_length(out) >= CONTENT_HIGH_WATER) {
		session_flush_soon(s);
		return;
	}
	if (s->dot.bytes != j->size) {
		log_warn("%s: content is %llu bytes, the job said %llu", j->qid_text,
		    (unsigned long long)s->dot.bytes, (unsigned long long)j->size);
		session_broken(s, "4.3.0", "message content does not match its "
		    "size");
		return;
	}
	dot_finish(&s->dot, out);
	session_set_state(s, SS_DOT);
	session_timer(s, agent.cfg->delivery.data_timeout);
	session_flush_soon(s);
}
