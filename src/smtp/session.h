/*
 * session.h - the insides of one SMTP client connection of tern-smtp,
 * shared by session.c (connection, greeting, EHLO, replies, timeouts),
 * tls.c (STARTTLS) and txn.c (MAIL, RCPT, DATA and the content). Not
 * used outside src/smtp.
 */
#ifndef TERN_SMTP_SESSION_H
#define TERN_SMTP_SESSION_H

#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include <stdarg.h>

#include "smtp.h"
#include "util.h"

#define CONTENT_HIGH_WATER	(256 * 1024)	/* bytes queued to the socket */
#define CONTENT_LOW_WATER	(64 * 1024)
#define CONTENT_CHUNKS_PER_READ	4
#define QUIT_TIMEOUT_SEC	5

void session_flush_soon(struct session *s);

enum session_state {
	SS_CONNECTING,		/* TCP connect in progress */
	SS_GREETING,		/* waiting for 220 */
	SS_EHLO,		/* EHLO sent */
	SS_HELO,		/* HELO sent (EHLO refused) */
	SS_STARTTLS,		/* STARTTLS sent */
	SS_HANDSHAKE,		/* TLS handshake in progress */
	SS_IDLE,		/* ready, no job: in the connection cache */
	SS_MAIL,		/* MAIL and RCPTs sent, replies outstanding */
	SS_DATA,		/* DATA sent, waiting for 354 */
	SS_CONTENT,		/* sending the message */
	SS_DOT,			/* the final dot sent, waiting for the reply */
	SS_DATA_VOID,		/* a pipelined DATA of a transaction without an
				 * accepted recipient: its reply is read (after
				 * a 354, a lone dot ends the empty message)
				 * before RSET */
	SS_RSET,		/* RSET sent */
	SS_QUIT,		/* QUIT sent */
};


enum cmd_kind { CMD_MAIL, CMD_RCPT };

struct cmd {
	enum cmd_kind kind;
	size_t rcpt;			/* CMD_RCPT: index in job->rcpts */
	char *line;			/* with CRLF */
};

struct session {
	struct dest *dest;
	struct job *job;		/* NULL when idle */
	struct mx_target *targets;	/* copied: the dest may re-resolve */
	size_t n_targets;
	size_t target;			/* the one connected or tried now */
	struct bufferevent *bev;
	SSL *ssl;
	enum session_state state;
	struct smtp_reply_parser parser;
	struct event *ev_timer;
	/* Plain sessions (no TLS) write their output straight to the socket,
	 * once per loop turn, with the bufferevent's EV_WRITE off: through the
	 * bufferevent each write costs two epoll_ctl() and a loop turn. Only
	 * what the socket does not take is left to the bufferevent. */
	struct event *ev_flush;
	bool in_read;			/* inside the read callback */
	bool dead;			/* freed at the end of the callback */

	/* The server's EHLO keywords. */
	bool esmtp, pipelining, starttls, eightbitmime, smtputf8, dsn, size;
	uint64_t size_limit;		/* 0: none announced */

	bool tls;
	bool tls_failed;		/* the handshake failed with this target:
					 * opportunistic reconnects without */
	char tls_desc[128];
	unsigned n_msgs;		/* transactions on this connection */
	bool established;		/* past greeting, EHLO and TLS */
	bool fresh_retry_done;		/* a cached connection failed once */

	/* The current transaction. */
	struct cmd *cmds;
	size_t n_cmds, n_sent, n_replied;
	bool mail_failed;
	bool data_sent;			/* DATA went out with MAIL and RCPT */
	bool void_dot_sent;		/* SS_DATA_VOID: the lone dot is out */
	bool got_txn_reply;		/* any reply in this transaction */
	size_t n_accepted;
	struct dot_state dot;
	uint32_t next_chunk;

	/* Why the last target failed, for the job if all fail. */
	uint8_t last_stage;		/* enum delivery_stage */
	char last_status[16];
	char last_text[RESULT_TEXT_MAX];
};

/* "EHLO", "MAIL FROM", ... by state, for logs. */
extern const char *const state_names[];

/* session.c */
void session_set_state(struct session *s, enum session_state st);
void session_timer(struct session *s, int64_t secs);
void session_write(struct session *s, const char *line);
void session_printf(struct session *s, const char *fmt, ...) TERN_PRINTF(2, 3);
const struct mx_target *session_target(const struct session *s);
void cmds_clear(struct session *s);
/* The stage (enum delivery_stage) of the conversation, by state. */
uint8_t session_stage(const struct session *s);
/* The status of a reply: its own, else "N.0.0" of its class. */
void reply_status(const struct smtp_reply *r, char *status, size_t size);
/* "host mx[ip] said: ... (in reply to CMD command)" */
void reply_diag(const struct session *s, const struct smtp_reply *r,
    const char *cmd, char *buf, size_t size);
void session_target_failed(struct session *s, const char *status,
    const char *fmt, ...) TERN_PRINTF(3, 4);
void session_broken(struct session *s, const char *status, const char *fmt,
    ...) TERN_PRINTF(3, 4);
void session_send_ehlo(struct session *s);
void session_after_job(struct session *s);
void session_read_cb(struct bufferevent *bev, void *arg);
void session_write_cb(struct bufferevent *bev, void *arg);
void session_event_cb(struct bufferevent *bev, short what, void *arg);

/* tls.c */
/* After the 220 to STARTTLS: discard what came with it, start the
 * handshake. */
void session_start_tls(struct session *s);
/* The handshake is done: judge the certificate, log, EHLO again. */
void session_tls_done(struct session *s);

/* txn.c */
void session_start_txn(struct session *s);
void session_mail_reply(struct session *s, const struct smtp_reply *r);
/* stage: DELIVERY_STAGE_DATA (a refused DATA) or _DOT. */
void session_result_accepted(struct session *s, const struct smtp_reply *r,
    uint8_t stage);
void session_content_fill(struct session *s);

#endif
