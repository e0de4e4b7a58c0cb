/*
 * qmgr.h - tern-qmgr's shared state: the bounded active set (jobs of
 * claimed recipients, grouped by message and destination domain), the
 * destinations with their limits, the connected delivery agents, and the
 * writer thread that commits every change to the queue.
 *
 * Memory is bounded by QMGR_ACTIVE_MAX claimed recipients, whatever the
 * size of the queue: waiting work stays in the LMDB schedule.
 */
#ifndef TERN_QMGR_H
#define TERN_QMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "daemon.h"
#include "ipc.h"
#include "policy.h"
#include "queue.h"
#include "result_decode.h"
#include "suppress_policy.h"
#include "verp.h"

#define QMGR_ACTIVE_MAX		10000	/* claimed recipients held in memory */
#define QMGR_CLAIM_BATCH	1000	/* recipients claimed per transaction */
#define QMGR_JOB_RCPT_MAX	100	/* recipients in one job (one SMTP transaction) */
#define QMGR_POLL_MS		1000	/* the schedule is looked at least this often */
#define QMGR_BUSY_POLL_MS	20	/* ... and this often while due work
					 * waits for a claim under way */
#define QMGR_JITTER_PCT		10	/* retries come up to 10% later */
/* One destination holds at most this many claimed recipients waiting to
 * be sent, so a slow or blocked one cannot fill the active set and starve
 * the others: the rest go back to the schedule for about the time the
 * destination needs to work through what it has. */
#define QMGR_DEST_PENDING_MAX	(QMGR_ACTIVE_MAX / 4)
#define QMGR_DEST_WAIT_MIN_MS	5000
#define QMGR_DEST_WAIT_MAX_MS	(15 * 60 * 1000)

#ifdef IPC_DELIVERY_MAX_RCPTS
_Static_assert(QMGR_JOB_RCPT_MAX <= IPC_DELIVERY_MAX_RCPTS,
    "a job must fit what an agent takes");
#endif

struct dest;
struct agent;
struct conn;

struct job_rcpt {
	uint32_t index;
	char *address;
	char *orcpt;
	uint8_t notify;
	uint8_t flags;			/* QUEUE_RF_* when claimed */
	uint32_t attempts;		/* made before this one */
	bool done;			/* its result was taken */
};

/* Claimed recipients of one message for one destination: one delivery. */
struct job {
	TAILQ_ENTRY(job) entry;		/* its dest's pending list or its agent's */
	uint32_t id;			/* the reqid of DELIVERY_JOB */
	uint64_t qid;
	char *sender;			/* the message's envelope sender */
	char *return_path;		/* VERP sender sent instead, or NULL */
	char *envid;
	struct dest *dest;
	struct agent *agent;		/* NULL until sent */
	struct event *ev_timeout;	/* [delivery] job_timeout */
	int64_t arrival_ms;
	int64_t sent_ms;
	uint64_t size;
	uint8_t body;
	uint8_t ret;
	bool smtputf8;
	struct job_rcpt *rcpts;
	size_t n_rcpts;
};
TAILQ_HEAD(job_list, job);

struct dest {
	struct dest *hnext;		/* hash chain */
	TAILQ_ENTRY(dest) ready_entry;
	bool in_ready;
	char *name;			/* lower-case domain */
	unsigned limit;			/* jobs in flight at most */
	unsigned in_flight;
	struct job_list pending;	/* claimed, not yet sent */
	size_t n_pending;
	size_t pending_rcpts;		/* recipients in pending (and building) jobs */
	uint64_t sent_rcpts;		/* recipients sent, for its pace */
	uint64_t pace_mark;		/* sent_rcpts at pace_usec */
	uint64_t pace_usec;		/* start of the pace window */
	double pace;			/* recipients sent per second, 0 unknown */
	unsigned rate_count;		/* [destination] rate: jobs per period */
	unsigned rate_period;		/* seconds; 0 no rate limit */
	double tokens;
	uint64_t tokens_usec;		/* monotonic time of tokens */
	struct event *ev_rate;
	struct job *building;		/* the job being filled by a claim */
};

struct agent {
	TAILQ_ENTRY(agent) entry;
	struct conn *conn;
	uint32_t credits;
	struct job_list jobs;		/* sent, not yet answered */
	size_t n_jobs;
	uint32_t late;			/* timed-out jobs whose credit is still out */
};

enum conn_kind {
	CONN_UNKNOWN,			/* nothing received yet */
	CONN_AGENT,			/* a delivery agent */
	CONN_NOTIFIER,			/* cleanup (QMGR_QUEUED) */
	CONN_CTL,			/* ternctl */
	CONN_BOUNCE,			/* tern-bounce (BOUNCE_*) */
};

struct conn {
	struct ipc_conn *ipc;
	enum conn_kind kind;
	struct agent *agent;
	unsigned refs;			/* control requests awaiting a commit */
	bool closed;
	pid_t peer_pid;			/* SO_PEERCRED, for the log */
};

struct qmgr {
	struct daemon d;
	struct queue *q;
	struct evconnlistener *listener;
	struct event *ev_poll;
	struct event *ev_maint;
	struct retry_policy policy;
	struct bounce_policy supp_policy; /* [bounce] suppression */
	int64_t job_timeout_ms;
	unsigned max_connections;
	size_t n_active;		/* recipients held in jobs */
	size_t n_in_flight;		/* jobs sent to agents */
	size_t n_conns;
	uint32_t next_job_id;
	TAILQ_HEAD(, dest) ready;	/* dests with pending jobs */
	TAILQ_HEAD(, agent) agents;
	bool claim_wanted;
	uint8_t verp_key[VERP_KEY_LEN];	/* queue_dir/verp.key */
	/* What a peer shows to be ternctl or tern-bounce (qmgr.c). */
	struct stat ctl_proof;		/* run_dir/private */
	struct stat bounce_proof;	/* queue_dir/verp.key */
	struct bounce_classifier *classifier; /* [bounce] classes_file */
};

extern struct qmgr qmgr;

/* qmgr.c */
void qmgr_maybe_exit(void);
void conn_unref(struct conn *c);

/* store.c: every write goes through the writer thread, in groups */
typedef void (*store_op_cb)(void *arg, enum queue_err status, bool removed);
typedef void (*store_flush_cb)(void *arg, int rc, enum queue_err err,
    size_t n);
void store_start(void);
void store_stop(void);
/* Work held, in flight or gathered: not yet committed. */
bool store_busy(void);
/* A claim is asked for or under way: its end asks for the next one. */
bool store_claim_pending(void);
/* The queue had no room for a group of changes: it is held and retried,
 * and nothing new is claimed or sent until it is committed. */
bool store_full(void);
/* The group being gathered (committed when the writer is free). */
struct queue_update *store_group(void);
/* Call right after adding op number queue_update_count()-1 of the
 * group: cb runs on the loop after its commit. qid is for the log. */
void store_track(uint64_t qid, store_op_cb cb, void *arg);
void store_want_claim(size_t max);
void store_want_flush(uint64_t qid, store_flush_cb cb, void *arg);
void store_want_maintenance(void);
/* Hands the pending work to the writer when it is free. */
void store_kick(void);

/* sched.c */
void sched_init(void);
void sched_claimed(struct queue_claim *c, int64_t now_ms);
void sched_request_claim(void);
void sched_arm_poll(void);

/* dest.c */
struct dest *dest_get(const char *domain);
void dest_push(struct dest *d, struct job *j);
/* How long recipients beyond QMGR_DEST_PENDING_MAX should wait. */
int64_t dest_wait_ms(const struct dest *d);
void dest_job_finished(struct dest *d);
void dest_drop_qid(uint64_t qid, bool unclaim);
void dest_unclaim_all(void);
void dispatch(void);

/* agent.c */
void agent_attach(struct conn *c);
void agent_on_msg(struct agent *a, struct ipc_msg *m);
void agent_detach(struct agent *a);
void agent_send_job(struct agent *a, struct job *j);
struct agent *agent_pick(void);

/* results.c */
void result_attempt(struct job *j, struct job_rcpt *r,
    const struct rcpt_result *res, bool from_agent, int64_t now_ms);
void result_defer_job(struct job *j, const char *status, const char *text,
    int64_t now_ms);
void result_expire(const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, int64_t now_ms);
void result_suppressed(const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, const char *reason, int64_t now_ms);
void job_free(struct job *j);

/* bounce.c: messages with DSNs to queue, for tern-bounce */
void bounce_attach(struct conn *c);
void bounce_on_msg(struct conn *c, struct ipc_msg *m);
void bounce_detach(struct conn *c);
/* qid has a recipient with a DSN flag (committed); final: it is ACTIVE
 * in a final state (not in the schedule). */
void bounce_notify(uint64_t qid, uint32_t rcpt, bool final);
/* An inbound message, its recipients claimed: for bounce to parse. */
void bounce_feedback(const struct queue_loaded_msg *lm);

/* control.c */
void control_on_msg(struct conn *c, struct ipc_msg *m);

#endif
