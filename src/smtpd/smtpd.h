/*
 * smtpd.h - what the parts of tern-smtpd share: the daemon state, the
 * listeners, the session and transaction structs and the functions each
 * file offers the others. Runs in tern-smtpd, unprivileged.
 */
#ifndef TERN_SMTPD_H
#define TERN_SMTPD_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "daemon.h"
#include "data.h"
#include "smtp_parse.h"

struct bufferevent;
struct evbuffer;
struct event;
struct evconnlistener;
struct session;

#define SMTP_LINE_MAX		512	/* command line with CRLF (RFC 5321) */
#define SMTP_AUTH_LINE_MAX	12288	/* AUTH continuation lines (RFC 4954) */

/* One [listen NAME] section with its socket and TLS context. */
struct listener {
	const struct cfg_listener *cfg;
	struct evconnlistener *evl;
	int fd;
	SSL_CTX *tls;			/* NULL: no TLS on this listener */
};

/* One name:hash line of [auth] users_file. */
struct user {
	char *name;
	char *hash;
};

struct smtpd {
	struct daemon d;
	struct listener *listeners;
	size_t n_listeners;
	size_t n_sessions;
	LIST_HEAD(, session) sessions;	/* for the drain */
	struct user *users;		/* read before the privilege drop */
	size_t n_users;
	uint64_t next_id;
};

extern struct smtpd smtpd;

enum session_state {
	S_CONNECTED,		/* greeting not yet sent (greeting_delay) */
	S_TLS_HANDSHAKE,	/* STARTTLS or smtps: waiting for the handshake */
	S_HELO,			/* greeted; EHLO/HELO expected */
	S_READY,		/* after EHLO: no transaction */
	S_MAIL,			/* MAIL accepted: RCPT expected */
	S_RCPT,			/* at least one RCPT: more RCPT or DATA/BDAT */
	S_DATA,			/* reading the DATA stream */
	S_BDAT,			/* reading a BDAT chunk */
	S_AUTH,			/* reading an AUTH continuation line */
	S_QUIT,			/* the last reply is being written */
};

/* One MAIL transaction; it lives from MAIL until its final reply. */
struct transaction {
	uint32_t reqid;			/* names it at cleanup */
	struct smtp_mail mail;
	unsigned n_rcpts;
	struct data_reader reader;
	uint64_t bdat_left;		/* bytes of the current BDAT chunk */
	bool bdat_last;
	bool too_big;
	bool lost;			/* cleanup went away meanwhile */
	bool begun;			/* BEGIN was sent to cleanup */
	char queue_id[32];		/* cleanup's answer to BEGIN ("" none) */
	bool client_logged;		/* "QID: client=" was logged */
	bool bdat_used;			/* CHUNKING: DATA is no longer allowed */
	struct smtp_rcpt rcpt;		/* the RCPT cleanup is asked about */
	char *hdr;			/* the header block so far (submission) */
	size_t hdr_len;
	bool hdr_done;			/* From: was checked */
	bool from_refused;
	char from_bad[128];
};

/* What a session waits for before it reads on. */
enum session_wait {
	W_NONE,
	W_CLEANUP,		/* a CLEANUP_REPLY */
	W_AUTH,			/* the password check of the worker thread */
	W_DELAY,		/* a deliberate delay (AUTH failure) */
	W_BACKPRESSURE,		/* cleanup's connection is full */
	W_OUTPUT,		/* the client to read its replies */
};

struct session {
	uint64_t id;
	LIST_ENTRY(session) link;	/* smtpd.sessions */
	struct listener *listener;
	struct bufferevent *bev;
	struct event *ev_timer;		/* greeting delay, waits */
	struct sockaddr_storage peer;
	char addr[64];			/* "192.0.2.1" */
	char helo[256];
	enum session_state state;
	enum session_wait wait;
	bool esmtp;
	bool tls;
	char tls_info[96];		/* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
	bool trusted;			/* client in trusted_networks */
	char *auth_user;
	char *auth_login_user;		/* AUTH LOGIN: name given, password next */
	int auth_step;
	void *auth_job;
	unsigned errors;
	unsigned junk;			/* NOOP/RSET/VRFY/HELP since the last message */
	bool discard_line;		/* skipping the rest of an over-long line */
	struct transaction *tx;
	/* Counts for the disconnect line, Postfix-style. */
	unsigned n_ehlo, n_helo, n_starttls, n_auth, n_mail, n_rcpt, n_data,
	    n_bdat, n_rset, n_noop, n_quit, n_vrfy, n_help, n_unknown, n_commands;
	/* Set when a reply must be followed by closing the connection. */
	bool closing;
	bool in_process;		/* session_process is on the stack */
	bool counted;			/* in the per-client table */
	const char *delayed_reply;	/* written when a W_DELAY ends */
	enum { P_NONE, P_BEGIN, P_RCPT, P_END } pending;
	/* A plain TCP session (no TLS): its replies collect in replies and
	 * are written by ev_flush straight to the socket, one write() per
	 * loop turn, and it reads on while it waits for cleanup. It reads
	 * through ev_read into plain_in itself (one read() per event, no
	 * FIONREAD); the bufferevent only writes. */
	bool plain;
	struct evbuffer *replies;
	struct event *ev_flush;
	struct event *ev_read;		/* plain: EV_READ|EV_PERSIST on the socket */
	bool reading;			/* plain: ev_read is added */
	struct evbuffer *plain_in;	/* plain: what was read, not yet used */
	struct evbuffer *in;		/* the input: plain_in or the TLS bufferevent's */
	/* When unprocessed input (a partial command line) first sat in the
	 * buffer: a client that trickles bytes must still finish its line
	 * within the timeout (the read timeout alone restarts per byte). */
	uint64_t partial_since_usec;
};

/* session.c */
void session_accept(struct listener *l, int fd, struct sockaddr *sa, int salen);
void session_enter_state(struct session *s, enum session_state st);
void session_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void session_reply_error(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void session_close_after_reply(struct session *s);
void session_resume(struct session *s);
void session_wait(struct session *s, enum session_wait w);
void session_reset_transaction(struct session *s);
void session_drain_all(void);
void session_start_tls(struct session *s);
void session_data_input(struct session *s);
void session_headers_done(struct session *s);
void session_cleanup_reply(struct session *s, uint16_t code,
    const char *enhanced, const char *text, const char *queue_id);
void session_cleanup_lost(struct session *s);
void session_auth_result(struct session *s, const char *user, bool ok);
void session_delay(struct session *s, double seconds);

/* commands.c */
void smtp_command(struct session *s, char *line);
void smtp_auth_continue(struct session *s, char *line);
void smtp_message_end(struct session *s);
void smtp_bdat_chunk_end(struct session *s);

/* cleanup_link.c */
void cleanup_link_init(struct daemon *d);
bool is_cleanup_up(void);
uint32_t cleanup_begin(struct session *s);
void cleanup_rcpt(struct session *s, const struct smtp_rcpt *r);
void cleanup_data(struct session *s, const void *p, size_t n);
void cleanup_end(struct session *s);
void cleanup_abort(struct session *s);
bool is_cleanup_full(void);

/* tls.c */
SSL_CTX *tls_context_new(const struct cfg_listener *l);
struct bufferevent *tls_socket_new(struct listener *l, int fd);
struct bufferevent *tls_filter_new(struct listener *l, struct bufferevent *plain);
void tls_describe(struct bufferevent *bev, char *buf, size_t size);
void tls_error(struct bufferevent *bev, char *buf, size_t size);

/* auth.c */
void auth_load_users(struct smtpd *sd);
void auth_check(struct session *s, const char *user, const char *password);
void auth_cancel(struct session *s);
double auth_failure_delay(const struct session *s);

/* clients.c */
int clients_add(const char *addr, unsigned max);
void clients_remove(const char *addr);
void clients_auth_failure(const char *addr);
unsigned clients_auth_failures(const char *addr);

#endif
