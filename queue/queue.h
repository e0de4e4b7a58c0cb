/*
 * queue.h - libternq, tern's durable queue store: one LMDB environment in
 * [server] queue_dir holding messages, their content and recipients, the
 * schedule of due work, the suppression list and the event log. The
 * on-disk format, the commit points and every recipient state are
 * documented in queue/SCHEMA.md.
 *
 * Linked by the queue writers (tern-cleanup, tern-qmgr) and by readers
 * (tern-smtp, tern-bounce, ternctl). Writers need read-write access to
 * queue_dir; a reader opened with QUEUE_OPEN_READONLY writes only to
 * lock.mdb.
 *
 * Conventions:
 * - Functions return 0 on success and -1 on failure; queue_last_error()
 *   then says why (per thread, like errno). Each message of a batch and
 *   each operation of an update also has its own status.
 * - Times are unix milliseconds (int64_t, names end in _ms).
 * - A queue id is a uint64_t; its text form is 16 uppercase hex digits,
 *   and ids sort in arrival order both as numbers and as text.
 * - Records passed to callbacks point into the LMDB map: valid only
 *   during the callback. A callback returns 0 to go on, 1 to stop.
 * - One struct queue is shared by the threads of a process. Never call a
 *   function that writes from inside a callback.
 * - Every commit is synced (fdatasync) before it returns. The only
 *   exception is the test-only TERN_QUEUE_UNSAFE_NOSYNC=1 environment
 *   variable, logged as a warning at open (never use it in production).
 */
#ifndef TERN_QUEUE_H
#define TERN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h"	/* enum cleanup_source, cleanup_body, cleanup_ret, CLEANUP_NOTIFY_* */

struct tern_config;

/* ---- errors ---- */

enum queue_err {
	QUEUE_OK = 0,
	QUEUE_ERR_NOTFOUND,	/* no such message, recipient or entry */
	QUEUE_ERR_CORRUPT,	/* a record failed to decode: logged, quarantined
				 * (writers) or skipped (readers); go on */
	QUEUE_ERR_STATE,	/* the operation does not apply in this state */
	QUEUE_ERR_INVALID,	/* bad argument (no recipient, field too long) */
	QUEUE_ERR_FULL,		/* the map reached [queue] map_size_max: 452 4.3.1 */
	QUEUE_ERR_NOSPACE,	/* the disk is full (ENOSPC, EDQUOT): 452 4.3.1 */
	QUEUE_ERR_IO,		/* I/O or other storage error; nothing was
				 * committed: 451 4.3.0 */
	QUEUE_ERR_VERSION,	/* the store's schema is newer than this program */
};

/* The error of the last failed call in this thread. */
enum queue_err queue_last_error(void);
/* A short text for logs ("map full at map_size_max"). */
const char *queue_strerror(enum queue_err e);
/* The SMTP reply for a refused commit: 452 4.3.1 (full) or 451 4.3.0. */
void queue_err_smtp(enum queue_err e, unsigned *code, const char **status);

/* ---- the environment ---- */

#define QUEUE_OPEN_READONLY	0x01	/* never writes (tern-smtp, ternctl listing) */

struct queue_options {
	const char *dir;		/* the environment directory ([server] queue_dir) */
	uint64_t map_size;		/* initial map size in bytes ([queue] map_size) */
	uint64_t map_size_max;		/* the map never grows beyond ([queue] map_size_max) */
	unsigned flags;			/* QUEUE_OPEN_* */
};

struct queue;

/* Fills o from the config (dir, map sizes) with the given flags. */
void queue_options_from_config(struct queue_options *o,
    const struct tern_config *cfg, unsigned flags);
/* Opens (a writer also creates) the store; clears stale reader slots.
 * NULL on failure, logged, with queue_last_error() set. */
struct queue *queue_open(const struct queue_options *o);
/* Closes the store; no call of any thread may be running. */
void queue_close(struct queue *q);
/* Clears reader slots left by dead processes (call every minute or so). */
int queue_reader_check(struct queue *q, int *cleared);
/* True once LMDB reported MDB_PANIC: the process must exit and be restarted. */
bool queue_is_broken(const struct queue *q);

struct queue_stats {
	uint64_t commits;		/* write transactions committed by this process */
	uint64_t messages;		/* messages committed by this process */
	uint64_t map_grows;		/* times this process grew the map */
	uint64_t map_size;		/* current map size in bytes */
	uint64_t quarantined;		/* records moved to quarantine by this process */
};

/* Counters of this process since queue_open(). */
void queue_get_stats(struct queue *q, struct queue_stats *s);

/* Wall-clock time in unix milliseconds. */
int64_t queue_now_ms(void);

/* ---- queue ids ---- */

#define QUEUE_ID_LEN		16	/* hex digits, without the NUL */

/* Writes the 16-digit uppercase hex form of qid and a NUL. */
void queue_id_format(uint64_t qid, char out[QUEUE_ID_LEN + 1]);
/* Parses exactly 16 hex digits (either case); 0 or -1. */
int queue_id_parse(const char *s, uint64_t *qid);

/* ---- records (see SCHEMA.md for their encodings) ---- */

#define QUEUE_CHUNK_SIZE	(64 * 1024)	/* content bytes per chunk */
#define QUEUE_ADDRESS_MAX	500	/* bytes in an address (an LMDB key fits) */
#define QUEUE_FIELD_MAX		1000	/* bytes in another envelope field */
#define QUEUE_TEXT_MAX		4000	/* reply texts are cut to this */
#define QUEUE_RCPT_MAX		100000	/* recipients in one message */

/* A message's envelope and progress. */
struct queue_msg_info {
	uint64_t qid;
	int64_t arrival_ms;		/* when cleanup began the message */
	uint64_t size;			/* content bytes */
	uint32_t n_chunks;		/* content chunks (all full but the last) */
	uint8_t body;			/* enum cleanup_body */
	uint8_t source;			/* enum cleanup_source */
	uint8_t ret;			/* enum cleanup_ret (DSN RET) */
	bool smtputf8;
	bool hold;			/* held: nothing is scheduled */
	const char *sender;		/* envelope sender, "" the null sender */
	const char *envid;		/* DSN ENVID, "" none */
	const char *auth_user;		/* SASL user, "" none */
	const char *client_addr;	/* submitting client's IP, "" local */
	const char *client_name;	/* its verified name, "" unknown */
	const char *stream;		/* message stream name, "" the default */
	const char *message_id;		/* the Message-ID header, for logs, "" none */
	uint32_t n_rcpt;		/* recipients */
	uint32_t n_delivered;		/* recipients in state DELIVERED */
	uint32_t n_failed;		/* recipients in state FAILED */
	uint32_t n_dsn_pending;		/* recipients with a DSN still to be queued */
};

/* Every recipient is final and no DSN is pending: the message can go. */
bool queue_msg_is_finished(const struct queue_msg_info *m);

enum queue_rcpt_state {
	QUEUE_RCPT_QUEUED = 1,		/* not attempted yet */
	QUEUE_RCPT_DEFERRED = 2,	/* temporary failure; due at next_attempt_ms */
	QUEUE_RCPT_DELIVERED = 3,	/* final: accepted by the remote server */
	QUEUE_RCPT_FAILED = 4,		/* final: bounced, expired, suppressed, deleted */
};

/* Recipient flags. Where a recipient waits is one of: in the schedule,
 * claimed (ACTIVE, in the active db), or nowhere (final with no DSN
 * pending, or its message is held). */
#define QUEUE_RF_ACTIVE		0x01	/* claimed by qmgr: in flight */
#define QUEUE_RF_DSN_FAILURE	0x02	/* a failure DSN is still to be queued */
#define QUEUE_RF_DSN_DELAY	0x04	/* a delay DSN is still to be queued */
#define QUEUE_RF_DSN_SUCCESS	0x08	/* a success DSN is still to be queued */
#define QUEUE_RF_DELAY_WARNED	0x10	/* a delay DSN was decided: never again */
#define QUEUE_RF_DSN_MASK	(QUEUE_RF_DSN_FAILURE | QUEUE_RF_DSN_DELAY | \
				 QUEUE_RF_DSN_SUCCESS)

struct queue_rcpt_info {
	uint64_t qid;
	uint32_t index;			/* position in the message, from 0 */
	const char *address;
	const char *orcpt;		/* DSN ORCPT ("rfc822;a@b"), "" none */
	uint8_t notify;			/* CLEANUP_NOTIFY_* bits, 0 the default */
	uint8_t state;			/* enum queue_rcpt_state */
	uint8_t flags;			/* QUEUE_RF_* */
	uint32_t attempts;		/* delivery attempts made */
	int64_t first_attempt_ms;	/* 0: never attempted */
	int64_t last_attempt_ms;	/* 0: never attempted */
	int64_t next_attempt_ms;	/* its schedule time while it waits there */
	uint16_t last_code;		/* last SMTP reply code, 0 none (e.g. DNS) */
	const char *last_status;	/* its enhanced status ("4.2.0"), "" none */
	const char *last_text;		/* reply text or diagnostic, "" none */
	const char *last_host;		/* remote host ("mx.d[192.0.2.1]:25"), "" none */
	const char *bounce_class;	/* failure class (tern-bounce), "" none */
};

/* True when RFC 3461 asks for a DSN of this kind (QUEUE_RF_DSN_FAILURE,
 * _DELAY or _SUCCESS): never for the null sender or NOTIFY=NEVER; by
 * default (no NOTIFY) for failure and delay only. */
bool queue_dsn_wanted(const struct queue_msg_info *m,
    const struct queue_rcpt_info *r, uint8_t kind);

enum queue_event_type {
	QUEUE_EVENT_QUEUED = 1,		/* committed by cleanup */
	QUEUE_EVENT_DEFERRED = 2,	/* temporary failure, will retry */
	QUEUE_EVENT_DELIVERED = 3,	/* accepted by the remote server */
	QUEUE_EVENT_BOUNCED = 4,	/* permanent failure */
	QUEUE_EVENT_EXPIRED = 5,	/* max_queue_lifetime exceeded */
	QUEUE_EVENT_SUPPRESSED = 6,	/* refused: the address is suppressed */
	QUEUE_EVENT_COMPLAINT = 7,	/* a feedback report (ARF) arrived */
	QUEUE_EVENT_OPEN = 8,		/* later: tracking */
	QUEUE_EVENT_CLICK = 9,		/* later: tracking */
	QUEUE_EVENT_HELD = 10,		/* the operator held the message */
	QUEUE_EVENT_RELEASED = 11,	/* the operator released it */
	QUEUE_EVENT_DELETED = 12,	/* the operator deleted it */
	QUEUE_EVENT_QUARANTINED = 13,	/* a corrupt record took it out of the queue */
};

/* "queued", "deferred", ...; NULL for an unknown type. */
const char *queue_event_type_name(uint8_t type);

struct queue_event {
	uint64_t seq;			/* assigned when appended; increasing */
	int64_t time_ms;		/* appending 0: the batch commit or update time */
	uint8_t type;			/* enum queue_event_type */
	uint64_t qid;			/* 0: none */
	uint32_t rcpt_index;		/* the recipient in the message */
	const char *recipient;		/* its address, "" none */
	uint16_t code;			/* SMTP reply code, 0 none */
	const char *status;		/* enhanced status, "" none */
	const char *text;		/* reply text or detail, "" none */
	const char *remote_host;	/* "" none */
	uint32_t attempt;		/* the attempt number, 0 none */
	const char *bounce_class;	/* "" none */
};

enum queue_supp_source {
	QUEUE_SUPP_BOUNCE = 1,		/* a hard (or repeated soft) bounce */
	QUEUE_SUPP_COMPLAINT = 2,	/* a complaint (ARF) */
	QUEUE_SUPP_MANUAL = 3,		/* the operator */
};

/* "bounce", "complaint", "manual"; NULL for an unknown source. */
const char *queue_supp_source_name(uint8_t source);

struct queue_suppression {
	const char *address;		/* stored lower-cased */
	uint8_t source;			/* enum queue_supp_source */
	const char *reason;		/* free text ("550 5.1.1 no such user") */
	int64_t created_ms;
	int64_t expires_ms;		/* 0: never */
	uint64_t qid;			/* the message that caused it, 0 none */
};

/* A soft bounce to count (queue_update_soft_failure). */
struct queue_soft_failure {
	const char *address;
	uint64_t qid;			/* the message that failed */
	unsigned limit;			/* different messages; 0 never suppresses */
	int64_t window_ms;		/* counted within this time */
	int64_t expires_ms;		/* of the suppression; 0 never */
	const char *reason;		/* of the suppression */
};

/* ---- writing new messages (tern-cleanup) ---- */

struct queue_msg;

/* A fresh queue id for a message still to come: tern-cleanup takes it
 * when a transaction begins, so the client can log it before the commit
 * (Postfix's "QID: client=" line comes before the message's others). */
uint64_t queue_qid_new(void);
/* A new message in memory (all of it is held there until the commit);
 * envelope strings are copied (arrival, size and counters are ignored).
 * Its provisional queue id is envelope->qid, one from queue_qid_new(), or
 * a fresh one when that is 0; its arrival time is now. */
struct queue_msg *queue_msg_new(const struct queue_msg_info *envelope);
/* Adds a recipient; -1 (QUEUE_ERR_INVALID) when a field is too long. */
int queue_msg_add_rcpt(struct queue_msg *m, const char *address,
    const char *orcpt, uint8_t notify);
/* Appends content bytes, as they come. */
void queue_msg_append(struct queue_msg *m, const void *data, size_t len);
/* Appends bytes to the head: the message as stored is the head, then the
 * content (so fields known only at the end, like signatures, go first
 * without moving the content). */
void queue_msg_append_head(struct queue_msg *m, const void *data,
    size_t len);
/* The content (not the head) from byte off on: sets *p to it and returns
 * how many bytes follow there contiguously (0 at the end). */
size_t queue_msg_content_at(const struct queue_msg *m, uint64_t off,
    const void **p);
/* Drops the content and the head (a refused message keeps no memory). */
void queue_msg_drop_content(struct queue_msg *m);
/* The provisional queue id, for logs before the commit; the committed id
 * (queue_batch_qid) differs only after a collision, which is logged. */
uint64_t queue_msg_id(const struct queue_msg *m);
/* Bytes appended so far, head and content. */
uint64_t queue_msg_size(const struct queue_msg *m);
void queue_msg_free(struct queue_msg *m);

/*
 * A group of messages committed in ONE write transaction with ONE synced
 * commit. Each message gets its record, content chunks, recipients, a
 * schedule entry per recipient (due at commit time, none when held) and
 * a "queued" event per recipient, all in that transaction.
 */
struct queue_batch;

struct queue_batch *queue_batch_new(void);
/* Takes ownership of m; returns its index in the batch. */
size_t queue_batch_add(struct queue_batch *b, struct queue_msg *m);
/* Adds an event to the same transaction (e.g. "suppressed" at RCPT). */
void queue_batch_add_event(struct queue_batch *b, const struct queue_event *e);
size_t queue_batch_count(const struct queue_batch *b);
/* Commits; 0 when the commit happened (each message still has its own
 * status), -1 when nothing was committed (every status says why). */
int queue_batch_commit(struct queue *q, struct queue_batch *b);
/* QUEUE_OK when message i is durably in the queue. */
enum queue_err queue_batch_status(const struct queue_batch *b, size_t i);
/* The committed queue id of message i. */
uint64_t queue_batch_qid(const struct queue_batch *b, size_t i);
void queue_batch_free(struct queue_batch *b);

/*
 * Group commit from a writer thread: submitters hand messages over; the
 * thread commits everything pending as one batch (at most max_group
 * messages), then answers each submitter. While one commit syncs, the
 * next group gathers.
 */
struct queue_committer;

/* Called on the committer thread after the commit that holds the message
 * (status QUEUE_OK) or that failed (nothing committed). */
typedef void (*queue_commit_cb)(void *arg, enum queue_err status,
    uint64_t qid);

struct queue_committer *queue_committer_start(struct queue *q,
    size_t max_group);
/* Hands m over (ownership passes); cb(arg, ...) follows. Thread-safe. */
void queue_committer_submit(struct queue_committer *c, struct queue_msg *m,
    queue_commit_cb cb, void *arg);
/* Adds an event (copied) to the next group's transaction, unanswered
 * (e.g. "suppressed" for a recipient refused at RCPT). Thread-safe. */
void queue_committer_submit_event(struct queue_committer *c,
    const struct queue_event *e);
/* Submits and waits for the commit; the status, *qid when QUEUE_OK. */
enum queue_err queue_committer_submit_wait(struct queue_committer *c,
    struct queue_msg *m, uint64_t *qid);
/* Commits what is pending, answers it, and stops the thread. */
void queue_committer_stop(struct queue_committer *c);

/* ---- reading (any process) ---- */

/* One message with its recipients, owned by the caller. */
struct queue_loaded_msg {
	struct queue_msg_info info;
	struct queue_rcpt_info *rcpts;	/* all (load: but quarantined ones) or
					 * the claimed ones (claim), by index */
	size_t n_rcpts;
};

/* Loads a message and all its recipients in one read transaction. */
int queue_load(struct queue *q, uint64_t qid, struct queue_loaded_msg **out);
void queue_loaded_free(struct queue_loaded_msg *m);

/* A content chunk; data points into the map (valid during the call). */
typedef int (*queue_chunk_cb)(void *arg, uint32_t index, const void *data,
    size_t len);

/* Reads up to max content chunks of qid from chunk first, in order, in one
 * short read transaction; *n_read says how many (fewer at the end). A
 * delivery agent calls it again as its socket drains. */
int queue_content_read(struct queue *q, uint64_t qid, uint32_t first,
    uint32_t max, queue_chunk_cb cb, void *arg, uint32_t *n_read);

/* A message and all its recipients, valid during the call. */
typedef int (*queue_list_cb)(void *arg, const struct queue_msg_info *m,
    const struct queue_rcpt_info *rcpts, size_t n_rcpts);

/* Every message in arrival order, in one read transaction (ternctl). */
int queue_list(struct queue *q, queue_list_cb cb, void *arg);

struct queue_sched_entry {
	int64_t due_ms;
	uint64_t qid;
	uint32_t rcpt;
};

typedef int (*queue_sched_cb)(void *arg, const struct queue_sched_entry *e);

/* Schedule entries due at or before until_ms, in due order, at most max. */
int queue_schedule_scan(struct queue *q, int64_t until_ms, size_t max,
    queue_sched_cb cb, void *arg);
/* The earliest due time; -1 with QUEUE_ERR_NOTFOUND when nothing waits. */
int queue_schedule_earliest(struct queue *q, int64_t *due_ms);

/* ---- the queue manager (tern-qmgr) ---- */

/* The result of a claim: messages with their claimed recipients. */
struct queue_claim {
	struct queue_loaded_msg *msgs;
	size_t n_msgs;
	size_t n_rcpts;			/* claimed recipients in all */
};

/*
 * Claims up to max recipients due at or before now_ms, in due order, in
 * one write transaction: each leaves the schedule and becomes ACTIVE.
 * Stale schedule entries are dropped and corrupt records quarantined on
 * the way (never returned, never a loop). On success *out is set, also
 * when nothing is due (n_rcpts 0): free it with queue_claim_free(); on
 * failure it is NULL.
 */
int queue_claim_due(struct queue *q, int64_t now_ms, size_t max,
    struct queue_claim **out);
void queue_claim_free(struct queue_claim *c);

/* At qmgr start: every ACTIVE recipient (in flight when the previous run
 * died) is put back in the schedule, due at now_ms. *n: how many. */
int queue_requeue_active(struct queue *q, int64_t now_ms, size_t *n);

/* Makes every scheduled recipient (of qid, or all when qid is 0) due at
 * now_ms. Large queues are done in several transactions. */
int queue_flush(struct queue *q, uint64_t qid, int64_t now_ms, size_t *n);

/* The outcome of one delivery attempt (or decision) for a claimed recipient. */
struct queue_result {
	uint64_t qid;
	uint32_t rcpt;			/* recipient index */
	uint8_t state;			/* QUEUE_RCPT_DELIVERED, _DEFERRED or _FAILED */
	uint8_t event;			/* event type; 0: delivered, deferred or
					 * bounced by state (expired, suppressed:
					 * say so) */
	bool attempted;			/* a delivery attempt (not for an expiry) */
	int64_t time_ms;		/* when it ended */
	int64_t next_attempt_ms;	/* DEFERRED: when it is due again */
	uint8_t dsn;			/* QUEUE_RF_DSN_* to queue for it: a final
					 * recipient then stays ACTIVE until
					 * queue_update_dsn_done() */
	uint16_t code;			/* SMTP reply code, 0 none */
	const char *status;		/* enhanced status */
	const char *text;		/* reply text or diagnostic */
	const char *remote_host;	/* "" none */
	const char *bounce_class;	/* "" none */
};

/*
 * Several changes applied in ONE write transaction with ONE synced commit,
 * each with its event. Strings are copied when an operation is added.
 * When a change leaves a message finished (every recipient final, no DSN
 * pending), the message is removed in the same transaction.
 */
struct queue_update;

/* now_ms stamps the events of operations that carry no time. */
struct queue_update *queue_update_new(int64_t now_ms);
/* Applies a result to an ACTIVE recipient (else QUEUE_ERR_STATE). */
void queue_update_result(struct queue_update *u, const struct queue_result *r);
/* The DSNs in dsn (QUEUE_RF_DSN_*) were queued; a final recipient with no
 * DSN left leaves the active set. */
void queue_update_dsn_done(struct queue_update *u, uint64_t qid,
    uint32_t rcpt, uint8_t dsn);
/* Gives back a claimed recipient without an attempt, due at due_ms. */
void queue_update_unclaim(struct queue_update *u, uint64_t qid, uint32_t rcpt,
    int64_t due_ms);
/* Holds a message: its recipients leave the schedule (event "held"). */
void queue_update_hold(struct queue_update *u, uint64_t qid);
/* Releases a held message: its waiting recipients are due now. */
void queue_update_release(struct queue_update *u, uint64_t qid);
/* Deletes a message and all its records (event "deleted"). */
void queue_update_delete(struct queue_update *u, uint64_t qid);
/* Adds or replaces a suppression entry (address lower-cased). */
void queue_update_suppress_add(struct queue_update *u,
    const struct queue_suppression *s);
/* Removes a suppression entry (QUEUE_ERR_NOTFOUND when absent). */
void queue_update_suppress_remove(struct queue_update *u, const char *address);
/* Counts a soft bounce of an address (see "soft failures" below); when
 * f->limit different messages failed within f->window_ms the address is
 * suppressed (source bounce) in the same transaction and its count
 * starts again. Removing a suppression entry forgets the count too.
 * When the queue is full (QUEUE_ERR_FULL, QUEUE_ERR_NOSPACE) the update
 * is committed without its soft-bounce counts, whose status says why:
 * a lost count only delays a suppression; the results must not wait. */
void queue_update_soft_failure(struct queue_update *u,
    const struct queue_soft_failure *f);
/* Appends an event (e.g. a complaint); seq is assigned. */
void queue_update_event(struct queue_update *u, const struct queue_event *e);
size_t queue_update_count(const struct queue_update *u);
/* Commits; 0 when the commit happened (each operation still has its own
 * status), -1 when nothing was committed. */
int queue_update_commit(struct queue *q, struct queue_update *u);
/*
 * queue_update_commit(u) and then queue_claim_due(now_ms, max) in one
 * write transaction: one commit and one sync instead of two (the claim
 * sees the update's changes). On failure nothing was committed, *out is
 * NULL and u's statuses mean nothing: the caller may commit the two apart
 * (that path also retries a full queue without the soft-bounce counts).
 */
int queue_update_commit_claim(struct queue *q, struct queue_update *u,
    int64_t now_ms, size_t max, struct queue_claim **out);
/* QUEUE_OK when operation i was applied. */
enum queue_err queue_update_status(const struct queue_update *u, size_t i);
/* True when operation i removed its message (finished or deleted). */
bool queue_update_removed(const struct queue_update *u, size_t i);
void queue_update_free(struct queue_update *u);

/* ---- suppression ---- */

/* What a look-up found for one address. */
struct queue_supp_hit {
	bool found;			/* suppressed (and not expired) */
	uint8_t source;			/* enum queue_supp_source */
	int64_t expires_ms;		/* 0: never */
	char reason[128];		/* cut to fit */
};

/* Looks up n addresses in one read transaction; hits[i] for addrs[i].
 * Entries that expired at now_ms do not count. */
int queue_suppress_check(struct queue *q, const char *const *addrs, size_t n,
    int64_t now_ms, struct queue_supp_hit *hits);

typedef int (*queue_supp_cb)(void *arg, const struct queue_suppression *s);

/* Lists entries in address order, skipping expired ones; source 0 and
 * reason NULL match all, else reason matches a case-insensitive substring. */
int queue_suppress_list(struct queue *q, uint8_t source, const char *reason,
    int64_t now_ms, queue_supp_cb cb, void *arg);
/* One-operation updates: add (or replace) and remove. */
int queue_suppress_add(struct queue *q, const struct queue_suppression *s);
int queue_suppress_remove(struct queue *q, const char *address);
/* Deletes entries that expired at now_ms; *n: how many. */
int queue_suppress_purge(struct queue *q, int64_t now_ms, size_t *n);

/* ---- soft failures ---- */

/* The list kept per address holds at most this many messages. */
#define QUEUE_SOFTFAIL_MAX	1000

/* One message that soft-bounced at an address, when it last did. */
struct queue_softfail {
	int64_t time_ms;
	uint64_t qid;
};

/* Pure: notes that message qid soft-bounced at now_ms in list (*n entries
 * in time order, room for QUEUE_SOFTFAIL_MAX), dropping the entries
 * outside [now_ms - window_ms, now_ms] and keeping one entry per
 * message; returns the different messages counted, this one included. */
size_t queue_softfail_note(struct queue_softfail *list, size_t *n,
    uint64_t qid, int64_t now_ms, int64_t window_ms);
/* Deletes the lists with no failure since before_ms (now minus the
 * window: nothing of them counts any more); *n: how many. */
int queue_softfail_purge(struct queue *q, int64_t before_ms, size_t *n);
/* Reads an address's list (room for QUEUE_SOFTFAIL_MAX); *n 0 when none. */
int queue_softfail_get(struct queue *q, const char *address,
    struct queue_softfail *list, size_t *n);

/* ---- events ---- */

typedef int (*queue_event_cb)(void *arg, const struct queue_event *e);

/* Events with seq >= from_seq in order, at most max, in one read
 * transaction; *next_seq is where to go on from (for --follow). */
int queue_events_read(struct queue *q, uint64_t from_seq, size_t max,
    queue_event_cb cb, void *arg, uint64_t *next_seq);
/* Every retained event of one message, in order (ternctl trace). */
int queue_events_for(struct queue *q, uint64_t qid, queue_event_cb cb,
    void *arg);
/* Deletes events older than before_ms ([queue] event_retention), in
 * bounded transactions; *n: how many. */
int queue_events_purge(struct queue *q, int64_t before_ms, size_t *n);

/* ---- quarantine ---- */

/* A quarantined record: where it came from, why, its raw bytes. */
struct queue_quarantined {
	uint64_t seq;
	int64_t time_ms;
	const char *db;			/* "messages", "recipients", ... */
	const void *key;
	size_t key_len;
	const char *why;
	const void *value;
	size_t value_len;
};

typedef int (*queue_quarantine_cb)(void *arg,
    const struct queue_quarantined *r);

/* Lists the quarantine in the order records were moved there. */
int queue_quarantine_list(struct queue *q, queue_quarantine_cb cb, void *arg);

#endif
