/*
 * smtp.h - the parts of tern-smtp, the delivery agent, and what they share.
 *
 *   smtp.c     the story: setup, the conversation with tern-qmgr (jobs in,
 *              results out), per-recipient results and log lines
 *   dns.c      libunbound in the libevent loop
 *   mx.c       from a domain to an ordered, bounded list of addresses
 *   dest.c     destinations: MX results cached per TTL, waiting jobs,
 *              the connection cache, connection limits
 *   session.c  the SMTP client state machine (one connection);
 *              session.h its insides, shared with
 *   tls.c      STARTTLS and the certificate check
 *   txn.c      one transaction: MAIL, RCPT, DATA, the content
 *   content.c  dot-stuffing chunk by chunk
 *
 * tern-smtp reads message content from the queue (read-only) and writes
 * nothing; it runs unprivileged, not chrooted (it needs the queue and the
 * CA store).
 */
#ifndef TERN_SMTP_H
#define TERN_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "config.h"
#include "daemon.h"
#include "smtp_reply.h"

struct event;
struct evbuffer;
struct sandbox;
struct ssl_ctx_st;
struct ub_ctx;
struct queue;
struct ipc_client;
struct dest;
struct session;

#define MX_HOSTS_MAX		10	/* MX hosts looked at per destination */
#define RESULT_TEXT_MAX		1000	/* diagnostic text kept per recipient */

/* One recipient of a job, and its outcome once known. */
struct job_rcpt {
	uint32_t index;			/* in the message */
	char *address;
	char *orcpt;			/* "rfc822;a@b" or "" */
	uint8_t notify;			/* CLEANUP_NOTIFY_* */
	bool done;			/* has its result */
	bool accepted;			/* 250 to RCPT in the current transaction */
	uint16_t code;			/* 0: no reply */
	uint8_t stage;			/* enum delivery_stage */
	char status[16];
	char text[RESULT_TEXT_MAX];
};

/* A DELIVERY_JOB from tern-qmgr: one message, one domain, some recipients. */
struct job {
	TAILQ_ENTRY(job) entry;		/* in its destination's wait list */
	uint32_t id;			/* the reqid, echoed by the result */
	unsigned qmgr_gen;		/* the qmgr connection it came over */
	uint64_t qid;
	char qid_text[17];
	char *sender;
	char *domain;
	uint8_t body;			/* enum cleanup_body */
	bool smtputf8;
	uint64_t size;
	uint8_t ret;
	char *envid;
	int64_t arrival_ms;
	struct job_rcpt *rcpts;
	size_t n_rcpts;
	/* Timing for delays=a/b/c/d. */
	uint64_t t_received;		/* monotonic usec, job arrived */
	uint64_t t_session;		/* a session took it */
	uint64_t t_ready;		/* the connection was ready for MAIL */
	/* Where it went, for results and logs. */
	char relay_host[256];
	char relay_addr[64];
	unsigned relay_port;
	char tls[128];			/* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" */
	bool reused;			/* sent over a cached connection */
	bool connected;			/* a server greeted us for it */
};
TAILQ_HEAD(job_list, job);

/* One address to try, in order. */
struct mx_target {
	char host[256];			/* the MX host name */
	unsigned pref;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char addr[64];			/* numeric, for logs */
};

/* An MX resolution's outcome. */
struct mx_result {
	bool ok;
	struct mx_target *targets;
	size_t n_targets;
	bool secure;			/* every answer was DNSSEC-secure */
	int64_t ttl;			/* seconds the result stays valid */
	/* when !ok: */
	char status[16];		/* "5.1.2", "4.4.3", ... */
	char text[512];
};

/* The agent's process-wide state. */
struct agent {
	struct daemon d;
	struct tern_config *cfg;
	struct queue *queue;		/* NULL until it could be opened */
	struct ipc_client *qmgr;
	struct ub_ctx *ub;
	struct ssl_ctx_st *ssl_ctx;
	const char *helo_name;
	unsigned credits_max;		/* jobs in flight at most */
	unsigned qmgr_gen;		/* counts connections to qmgr */
	size_t n_jobs;			/* jobs in flight */
	size_t n_sessions;		/* open connections */
	struct dest **dests;
	size_t n_dests;
	struct event *ev_housekeeping;
};

extern struct agent agent;

/* ---- smtp.c ---- */
/* Sets a recipient's result unless it has one; logs the Postfix line.
 * stage (enum delivery_stage) is the command the reply answered, or
 * where the conversation stopped without one. */
void job_rcpt_result(struct job *j, struct job_rcpt *r, uint8_t stage,
    uint16_t code, const char *status, const char *text);
/* Every recipient without a result gets this one. */
void job_fail_rest(struct job *j, uint8_t stage, uint16_t code,
    const char *status, const char *text);
/* All recipients have results: send them to qmgr and free the job. */
void job_finish(struct job *j);
bool job_is_done(const struct job *j);

/* ---- dns.c ---- */
struct dns_rr {
	uint16_t type;			/* ns_t_mx, ns_t_a, ns_t_aaaa */
	uint32_t ttl;
	unsigned pref;			/* MX */
	char name[256];			/* MX exchange ("" for the root) */
	uint8_t addr[16];		/* A: 4 bytes, AAAA: 16 */
};

struct dns_answer {
	int rcode;			/* from the packet: 0, 2 SERVFAIL, 3 NXDOMAIN */
	bool timeout;			/* no answer in time (or a resolver error) */
	bool secure;			/* DNSSEC secure */
	bool bogus;			/* DNSSEC bogus: treated as SERVFAIL */
	struct dns_rr *rrs;		/* records of the asked type */
	size_t n_rrs;
	uint32_t min_ttl;
	char why[128];			/* a resolver error */
};

typedef void (*dns_cb)(void *arg, const struct dns_answer *a);

void dns_init(void);
/* Allows TCP to the resolvers' ports (sandbox.c): DNS over TCP. */
void dns_allow_servers(struct sandbox *sb);
/* Asks for (name, type); cb follows from the event loop, never inside. */
void dns_query(const char *name, int type, dns_cb cb, void *arg);
/* Parses a DNS message into a (for tests and fuzzing); 0 or -1. */
int dns_parse(const uint8_t *pkt, size_t len, int type, struct dns_answer *a);
void dns_answer_clear(struct dns_answer *a);

/* ---- mx.c ---- */
typedef void (*mx_cb)(void *arg, struct mx_result *res);
/* Resolves domain to targets (or a failure); cb owns res. */
void mx_resolve(const char *domain, mx_cb cb, void *arg);
void mx_result_free(struct mx_result *res);

/* ---- dest.c ---- */
/* Takes a new job: routes it to its destination's wait list. */
void dest_add_job(struct job *j);
/* A session asks for its next job (NULL: none waiting). */
struct job *dest_next_job(struct dest *d);
/* Every address of d failed for a session: defer the waiting jobs too. */
void dest_session_failed(struct dest *d, uint8_t stage, const char *status,
    const char *text);
/* A new session of d. */
void dest_session_add(struct dest *d, struct session *s);
/* A session of d got through greeting, EHLO and TLS: more may open. */
void dest_session_established(struct dest *d);
/* A session ended (closed, freed). */
void dest_session_gone(struct dest *d, struct session *s);
const struct mx_result *dest_targets(const struct dest *d);
const char *dest_name(const struct dest *d);
/* Closes idle sessions (drain). */
void dest_close_idle_all(void);
/* Drops expired, unused destinations. */
void dest_housekeeping(void);

/* ---- session.c ---- */
/* Opens a connection for j, trying d's targets in order; the session
 * registers itself with d (and may be gone again when this returns). */
void session_start(struct dest *d, struct job *j);
/* Gives an idle session its next job. */
void session_take_job(struct session *s, struct job *j);
/* Ends an idle session with QUIT. */
void session_quit(struct session *s);
bool session_is_idle(const struct session *s);
/* Past greeting, EHLO and TLS (or closing after that). */
bool session_is_established(const struct session *s);

/* ---- content.c ---- */
/* Dot-stuffing state across chunks. */
struct dot_state {
	bool at_line_start;		/* the next byte begins a line */
	bool last_cr;			/* the last byte written was CR */
	uint64_t bytes;			/* content bytes consumed */
};
void dot_state_init(struct dot_state *st);
/* Appends data dot-stuffed (a '.' at a line start doubled) to out. */
void dot_stuff(struct dot_state *st, const void *data, size_t len,
    struct evbuffer *out);
/* Appends the end: CRLF when the content did not end with one, then ".". */
void dot_finish(struct dot_state *st, struct evbuffer *out);

#endif
