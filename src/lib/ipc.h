/*
 * ipc.h - the one framing and the one list of message types for every
 * daemon-to-daemon conversation over Unix sockets (libevent driven).
 *
 * A frame is a 12-byte header and a payload:
 *   u32 length   payload bytes, at most IPC_MAX_PAYLOAD
 *   u16 type     one of enum ipc_type below
 *   u16 flags    IPC_F_FD: one file descriptor travels with this frame
 *   u32 reqid    chosen by the requester, echoed by the reply, so a
 *                session can park until its answer arrives
 * All integers are big-endian. The payload is a sequence of fields, each
 * encoded on its own (never a raw struct):
 *   u8, u16, u32, u64, i64   fixed width
 *   bool                     u8 0 or 1 (any other value is an error)
 *   str                      u32 n, then n bytes of which the last is NUL
 *                            and no other is (so a reader gets a C string
 *                            pointing into the frame, without a copy)
 *   data                     u32 n, then n bytes
 * The reader checks every field and calls ipc_msg_end(), which fails when
 * bytes are left over. A malformed frame is a protocol error: the
 * connection is closed and logged; it never crashes the daemon.
 *
 * Every connection starts with IPC_HELLO from both sides.
 */
#ifndef TERN_IPC_H
#define TERN_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;

/* 2: DELIVERY_RESULT carries the SMTP stage of each result. */
#define IPC_VERSION		2
#define IPC_HEADER_SIZE		12
#define IPC_MAX_PAYLOAD		(1024 * 1024)
#define IPC_DATA_CHUNK		(64 * 1024)	/* message content per frame */
#define IPC_DELIVERY_MAX_RCPTS	1000		/* recipients per DELIVERY_JOB, so
						 * its result fits in one frame */

#define IPC_F_FD		0x0001

/*
 * Message types, grouped by the conversation they belong to. The comment
 * on each gives its direction and payload. Add new types at the end of
 * their group; numbers never change meaning (bump IPC_VERSION instead).
 */
enum ipc_type {
	/* -- any connection -- */
	IPC_HELLO = 0x0001,		/* both ways, first frame: u32 version,
					 * str daemon name ("smtpd") */

	/*
	 * -- submission to tern-cleanup (smtpd, sendmail, bounce, later the
	 * HTTP API). One connection carries many transactions at once; reqid
	 * names the transaction and is chosen by the client. Every request
	 * but DATA and ABORT gets exactly one CLEANUP_REPLY.
	 * On run_dir/private/cleanup the first frame after HELLO carries
	 * (IPC_F_FD) a descriptor, opened for reading, that shows who the
	 * client is (peer_proof.h): queue_dir/verp.key for tern-bounce,
	 * whose BEGINs alone may claim CLEANUP_SOURCE_BOUNCE, run_dir/private
	 * for the others (tern-pickup). A BEGIN whose source does not match
	 * gets 554 5.7.0. The other sockets ignore a descriptor.
	 */
	IPC_CLEANUP_BEGIN = 0x0101,	/* client -> cleanup: a new transaction.
					 * u8 source (enum cleanup_source),
					 * str listener name ("" for none),
					 * str client hostname, str client address
					 * ("" for local), str helo, str auth user
					 * ("" none), bool trusted network,
					 * str tls ("" none, else "TLSv1.3 cipher"),
					 * str envelope sender ("" null sender),
					 * u8 body (enum cleanup_body), bool smtputf8,
					 * u64 declared size (0 none),
					 * u8 ret (enum cleanup_ret), str envid ("" none,
					 * xtext already decoded) */
	IPC_CLEANUP_RCPT = 0x0102,	/* client -> cleanup: str address,
					 * str orcpt ("" none; "rfc822;addr" decoded),
					 * u8 notify (CLEANUP_NOTIFY_* bits, 0 default) */
	IPC_CLEANUP_DATA = 0x0103,	/* client -> cleanup, no reply: data chunk of
					 * message bytes, at most IPC_DATA_CHUNK,
					 * dot-unstuffed; lines end in CRLF (LF alone
					 * from sendmail is accepted and fixed) */
	IPC_CLEANUP_END = 0x0104,	/* client -> cleanup: the data is complete;
					 * empty payload. The reply comes only after
					 * the durable commit. */
	IPC_CLEANUP_ABORT = 0x0105,	/* client -> cleanup, no reply: forget the
					 * transaction (RSET, QUIT, lost client) */
	IPC_CLEANUP_REPLY = 0x0106,	/* cleanup -> client: u16 SMTP code,
					 * str enhanced status ("2.0.0"), str text,
					 * str queue id: to an accepted BEGIN the
					 * provisional one (for the client's log),
					 * to END the committed one if this END
					 * committed the message, else "" */

	/*
	 * -- tern-cleanup to tern-signer (src/signer). One connection carries
	 * many signing jobs at once; reqid names the job and is chosen by the
	 * client. Only END gets a reply (one SIGN_REPLY). The first frame
	 * after HELLO carries (IPC_F_FD) a descriptor of run_dir/private
	 * opened for reading (peer_proof.h); without it the signer closes
	 * the connection.
	 */
	IPC_SIGN_BEGIN = 0x0201,	/* client -> signer, no reply: a new job.
					 * str signing domain (the From: domain,
					 * lower case) */
	IPC_SIGN_DATA = 0x0202,		/* client -> signer, no reply: data chunk of
					 * the message (headers and body exactly as
					 * it will be queued, CRLF line ends), at
					 * most IPC_DATA_CHUNK */
	IPC_SIGN_END = 0x0203,		/* client -> signer: the message is complete;
					 * empty payload; answered by one SIGN_REPLY */
	IPC_SIGN_ABORT = 0x0204,	/* client -> signer, no reply: forget the job */
	IPC_SIGN_REPLY = 0x0205,	/* signer -> client: u8 status (enum
					 * sign_status), str error text ("" on
					 * success), u32 n, then n times str header
					 * field ("DKIM-Signature: v=1; ..." complete,
					 * folded with CRLF+tab, no trailing CRLF),
					 * to be prepended to the message in order */

	/* -- notices to tern-qmgr from the queue writers -- */
	IPC_QMGR_QUEUED = 0x0301,	/* cleanup -> qmgr, no reply: new messages
					 * were committed; i64 earliest due time
					 * (unix seconds). qmgr reads the schedule. */

	/*
	 * -- tern-qmgr and its delivery agents (tern-smtp). The agent
	 * connects to qmgr's socket; qmgr sends jobs only against credits
	 * the agent granted with DELIVERY_READY. Job ids belong to one
	 * connection: when it closes, qmgr treats its jobs in flight as
	 * not attempted (requeue; a duplicate is possible, a loss is not),
	 * and the agent drops their results instead of sending them over a
	 * later connection.
	 */
	IPC_DELIVERY_READY = 0x0401,	/* agent -> qmgr: u32 more jobs it can
					 * take now (credits add up) */
	IPC_DELIVERY_JOB = 0x0402,	/* qmgr -> agent, reqid = job id:
					 * str queue id, str envelope sender
					 * ("" null sender; already the VERP address
					 * when one applies), str destination domain
					 * (MX lookup), u8 body (enum cleanup_body),
					 * bool smtputf8, u64 size,
					 * u8 ret, str envid,
					 * i64 arrival time (unix ms, for the
					 *   log's delay=; 0 unknown),
					 * u32 n recipients (1 to
					 *   IPC_DELIVERY_MAX_RCPTS), then n times:
					 *   u32 recipient index (in the message),
					 *   str address, str orcpt, u8 notify */
	IPC_DELIVERY_RESULT = 0x0403,	/* agent -> qmgr, reqid = job id: one result
					 * per recipient of the job:
					 * u32 n, then n times:
					 *   u32 recipient index, u16 SMTP code
					 *   (0: no reply, e.g. connection or DNS
					 *   failure), u8 stage (enum delivery_stage:
					 *   the command the reply answered, or
					 *   without one where the conversation
					 *   stopped; qmgr decides on it, never on
					 *   the text), str enhanced status ("4.4.1"),
					 *   str reply or diagnostic text (cut so
					 *   the frame fits),
					 *   str remote host ("" none),
					 *   str remote address ("" none),
					 *   str tls ("" none, else "TLSv1.3 cipher"),
					 *   u64 delivery time in milliseconds
					 * The job's credit is returned with it.
					 * Every recipient of the job is in the
					 * result exactly once; a recipient the
					 * agent could not attempt (content
					 * unreadable, agent draining) is a 4xx
					 * deferral with code 0. */

	/*
	 * -- tern-qmgr and tern-bounce (src/bounce). bounce connects to
	 * qmgr's socket; qmgr hands it the messages that have recipients with
	 * a DSN flag (QUEUE_RF_DSN_*), only against credits. bounce reads
	 * the message itself (read-only), has each DSN committed by cleanup
	 * (CLEANUP_SOURCE_BOUNCE) and then says which flags are done; qmgr
	 * clears them (queue_update_dsn_done) and only then hands out that
	 * message again. A crash in between repeats a DSN, never loses one.
	 */
	IPC_BOUNCE_READY = 0x0501,	/* bounce -> qmgr: u32 more messages it
					 * can take now (credits add up); the
					 * first carries a descriptor of
					 * queue_dir/verp.key (qmgr.c) */
	IPC_BOUNCE_WORK = 0x0502,	/* qmgr -> bounce, reqid = work id:
					 * str queue id */
	IPC_BOUNCE_DONE = 0x0503,	/* bounce -> qmgr, reqid = work id:
					 * u8 status (enum bounce_status),
					 * u32 n, then n times: u32 recipient
					 * index, u8 QUEUE_RF_DSN_* flags whose
					 * DSN is committed (or given up: 5xx
					 * from cleanup, logged). The credit is
					 * returned with it. */
	IPC_BOUNCE_FEEDBACK = 0x0504,	/* qmgr -> bounce, reqid = work id: str
					 * queue id of a message that arrived on
					 * the inbound listener (DSN, ARF report),
					 * its recipients claimed; takes a credit */
	IPC_BOUNCE_FEEDBACK_DONE = 0x0505, /* bounce -> qmgr, reqid = work id:
					 * u8 outcome (enum feedback_outcome),
					 * str summary for the log,
					 * u32 k, then k times u32 recipient index
					 *   (of the inbound message, to finish),
					 * u32 n events, then n times: u8 type
					 *   (enum queue_event_type), u64 queue id,
					 *   u32 recipient index, str recipient,
					 *   u16 code, str status, str text,
					 *   str bounce class (of the message it
					 *   is about, found by its VERP address),
					 * u32 m suppressions, then m times:
					 *   str address, u8 kind (enum
					 *   feedback_supp_kind), u8 source (enum
					 *   queue_supp_source), str reason,
					 *   i64 expiry (unix ms, 0 never),
					 *   u64 queue id.
					 * Returns the credit. */

	/*
	 * -- ternctl to tern-qmgr, over qmgr's socket: changes to the queue
	 * go through qmgr so its active set stays consistent. Every request
	 * gets one CTL_REPLY with the same reqid, sent after the commit.
	 * A connection's first request carries (IPC_F_FD) a descriptor of
	 * run_dir/private opened for reading, which shows it is ternctl:
	 * sandboxed daemons of tern's user cannot open it (qmgr.c).
	 */
	IPC_CTL_FLUSH = 0x0601,		/* ternctl -> qmgr: str queue id ("" all):
					 * every waiting recipient is due now */
	IPC_CTL_DELETE = 0x0602,	/* ternctl -> qmgr: str queue id */
	IPC_CTL_HOLD = 0x0603,		/* ternctl -> qmgr: str queue id */
	IPC_CTL_RELEASE = 0x0604,	/* ternctl -> qmgr: str queue id */
	IPC_CTL_SUPPRESS_ADD = 0x0605,	/* ternctl -> qmgr: str address,
					 * str reason, i64 expiry (unix ms, 0 never) */
	IPC_CTL_SUPPRESS_REMOVE = 0x0606, /* ternctl -> qmgr: str address */
	IPC_CTL_REPLY = 0x0607,		/* qmgr -> ternctl: u8 status (enum
					 * ctl_status), u64 count (recipients
					 * flushed, ...), str text for the operator */
};

/* The outcome of a control request. */
enum ctl_status {
	CTL_OK = 0,
	CTL_NOTFOUND = 1,		/* no such message or entry */
	CTL_INVALID = 2,		/* bad argument or not in this state */
	CTL_FAILED = 3,			/* the store failed; nothing changed */
};

/* The outcome of a BOUNCE_WORK. */
enum bounce_status {
	BOUNCE_DONE = 0,		/* every pending DSN is queued */
	BOUNCE_RETRY = 1,		/* some could not be: hand it out later */
};

/* What became of an inbound message (BOUNCE_FEEDBACK_DONE). */
enum feedback_outcome {
	FEEDBACK_PARSED = 0,		/* consumed: events and suppressions apply */
	FEEDBACK_KEEP = 1,		/* not recognized: held for the operator */
	FEEDBACK_RETRY = 2,		/* could not be read now: again later */
};

/* What a suppression entry of a BOUNCE_FEEDBACK_DONE asks for. */
enum feedback_supp_kind {
	FEEDBACK_SUPPRESS_NOW = 0,	/* a hard bounce or a complaint */
	FEEDBACK_SOFT_FAILURE = 1,	/* a soft bounce: counted, suppressing
					 * at [bounce] soft_bounce_limit */
};

/* Who hands a message to cleanup. */
enum cleanup_source {
	CLEANUP_SOURCE_SUBMISSION = 1,	/* smtpd, submission or smtps listener */
	CLEANUP_SOURCE_INBOUND = 2,	/* smtpd, inbound listener (feedback) */
	CLEANUP_SOURCE_SENDMAIL = 3,	/* the local sendmail command */
	CLEANUP_SOURCE_BOUNCE = 4,	/* a DSN composed by tern-bounce */
	CLEANUP_SOURCE_HTTP = 5,	/* the HTTP API */
};

enum cleanup_body {
	CLEANUP_BODY_7BIT = 0,
	CLEANUP_BODY_8BITMIME = 1,
	CLEANUP_BODY_BINARYMIME = 2,
};

enum cleanup_ret {
	CLEANUP_RET_DEFAULT = 0,
	CLEANUP_RET_FULL = 1,
	CLEANUP_RET_HDRS = 2,
};

/* The outcome of a signing job (SIGN_REPLY). */
enum sign_status {
	SIGN_OK = 0,
	SIGN_NO_KEY = 1,		/* no loadable key for the domain */
	SIGN_TEMPFAIL = 2,		/* an error: try again later */
};

/* The stage of the SMTP conversation a DELIVERY_RESULT speaks of. */
enum delivery_stage {
	DELIVERY_STAGE_NONE = 0,	/* no conversation (DNS, a local
					 * decision) or not known */
	DELIVERY_STAGE_CONNECT = 1,	/* connecting, the greeting */
	DELIVERY_STAGE_HELO = 2,	/* EHLO or HELO */
	DELIVERY_STAGE_STARTTLS = 3,	/* STARTTLS and the TLS handshake */
	DELIVERY_STAGE_MAIL = 4,	/* MAIL FROM */
	DELIVERY_STAGE_RCPT = 5,	/* RCPT TO */
	DELIVERY_STAGE_DATA = 6,	/* DATA, and the content before the dot */
	DELIVERY_STAGE_DOT = 7,		/* end of DATA (the final dot) */
};
#define DELIVERY_STAGE_MAX	DELIVERY_STAGE_DOT

/* DSN NOTIFY (RFC 3461); 0 means the default (FAILURE, DELAY). */
#define CLEANUP_NOTIFY_SUCCESS	0x01
#define CLEANUP_NOTIFY_FAILURE	0x02
#define CLEANUP_NOTIFY_DELAY	0x04
#define CLEANUP_NOTIFY_NEVER	0x08

/* The name of a type for logs; NULL when the type is unknown. */
const char *ipc_type_name(uint16_t type);
/* "none", "connect", "helo", "starttls", "mail", "rcpt", "data", "dot";
 * NULL when the stage is unknown. */
const char *delivery_stage_name(uint8_t stage);

/* ---- frames ---- */

struct ipc_header {
	uint32_t length;
	uint16_t type;
	uint16_t flags;
	uint32_t reqid;
};

/*
 * Decodes a frame header from the first bytes of a stream.
 * Returns 1 when a whole header is there and valid, 0 when more bytes
 * are needed, -1 when it is malformed (length too big, unknown type or
 * flags); *why then says which.
 */
int ipc_header_decode(const uint8_t *buf, size_t len, struct ipc_header *hdr,
    const char **why);

/* ---- reading a received message ---- */

struct ipc_msg {
	uint16_t type;
	uint16_t flags;
	uint32_t reqid;
	const uint8_t *data;		/* payload, valid during the callback */
	size_t len;
	size_t pos;			/* next unread byte */
	int fd;				/* passed descriptor or -1; the callback
					 * owns it once it reads it (set to -1) */
};

/* Each getter returns 0, or -1 when the field is missing or invalid. */
int ipc_get_u8(struct ipc_msg *m, uint8_t *v);
int ipc_get_u16(struct ipc_msg *m, uint16_t *v);
int ipc_get_u32(struct ipc_msg *m, uint32_t *v);
int ipc_get_u64(struct ipc_msg *m, uint64_t *v);
int ipc_get_i64(struct ipc_msg *m, int64_t *v);
int ipc_get_bool(struct ipc_msg *m, bool *v);
/* *s points into the payload: a C string, valid during the callback. */
int ipc_get_str(struct ipc_msg *m, const char **s);
int ipc_get_data(struct ipc_msg *m, const void **p, size_t *len);
/* Returns 0 when every byte was read, -1 when some are left over. */
int ipc_msg_end(const struct ipc_msg *m);

/* ---- building a message to send ---- */

struct ipc_out;

struct ipc_out *ipc_out_new(uint16_t type, uint32_t reqid);
void ipc_put_u8(struct ipc_out *o, uint8_t v);
void ipc_put_u16(struct ipc_out *o, uint16_t v);
void ipc_put_u32(struct ipc_out *o, uint32_t v);
void ipc_put_u64(struct ipc_out *o, uint64_t v);
void ipc_put_i64(struct ipc_out *o, int64_t v);
void ipc_put_bool(struct ipc_out *o, bool v);
/* NULL is sent as the empty string. */
void ipc_put_str(struct ipc_out *o, const char *s);
void ipc_put_data(struct ipc_out *o, const void *p, size_t len);
/* Attaches a descriptor; the connection closes it once it is sent. */
void ipc_out_set_fd(struct ipc_out *o, int fd);
void ipc_out_free(struct ipc_out *o);
/* The encoded frame (header and payload), for tests and fuzz seeds. */
const uint8_t *ipc_out_bytes(struct ipc_out *o, size_t *len);

/* ---- connections ---- */

struct ipc_conn;

/* A complete, well-framed message arrived (HELLO is handled inside). */
typedef void (*ipc_msg_cb)(struct ipc_conn *c, struct ipc_msg *m, void *arg);
/* The connection ended: peer closed, I/O error or protocol error. The
 * callback must call ipc_conn_free(). */
typedef void (*ipc_close_cb)(struct ipc_conn *c, const char *why, void *arg);

/*
 * Wraps a connected Unix socket. name is this daemon's name for HELLO.
 * Messages are delivered only after the peer's HELLO has arrived.
 */
struct ipc_conn *ipc_conn_new(struct event_base *base, int fd, const char *name,
    ipc_msg_cb on_msg, ipc_close_cb on_close, void *arg);
/* Queues a frame; consumes o. Never blocks. It is written at the end of
 * the loop's turn with the other frames of that turn (at once when
 * IPC_DATA_CHUNK bytes or more are waiting). */
void ipc_conn_send(struct ipc_conn *c, struct ipc_out *o);
/* The same, but the write waits until the loop is done with the current
 * callbacks, so frames sent together go out in one system call. */
void ipc_conn_send_soon(struct ipc_conn *c, struct ipc_out *o);
/* Closes the connection after logging why; on_close follows (deferred
 * when called from inside on_msg). Use for a malformed message. */
void ipc_conn_protocol_error(struct ipc_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ipc_conn_free(struct ipc_conn *c);
/* Bytes queued but not yet written: senders use it for backpressure. */
size_t ipc_conn_pending(const struct ipc_conn *c);
/* Stops (false) or resumes (true) reading from the peer: backpressure
 * for a receiver whose work queue is full. Frames already read are still
 * delivered. */
void ipc_conn_set_reading(struct ipc_conn *c, bool on);
/* The peer's HELLO name ("" until it arrived). */
const char *ipc_conn_peer_name(const struct ipc_conn *c);
/* The peer's credentials (SO_PEERCRED); 0 or -1. */
int ipc_conn_peer_cred(const struct ipc_conn *c, pid_t *pid, uid_t *uid,
    gid_t *gid);
int ipc_conn_fd(const struct ipc_conn *c);
/* Lets the owner hang its own state on the connection. */
void ipc_conn_set_arg(struct ipc_conn *c, void *arg);

/* ---- a client that stays connected to a service ---- */

struct ipc_client;

/* Called when the connection comes up (up = true) or goes down. Requests
 * in flight when it goes down will get no reply: fail or retry them. */
typedef void (*ipc_state_cb)(struct ipc_client *cl, bool up, void *arg);

/*
 * Connects to the Unix socket at path and reconnects after a loss, with
 * a delay growing from 100 ms to 2 s. Messages go to on_msg as with a
 * plain connection.
 */
struct ipc_client *ipc_client_new(struct event_base *base, const char *path,
    const char *name, ipc_msg_cb on_msg, ipc_state_cb on_state, void *arg);
bool ipc_client_is_up(const struct ipc_client *cl);
/* Sends when up and returns 0; otherwise frees o and returns -1. */
int ipc_client_send(struct ipc_client *cl, struct ipc_out *o);
/* The first frame sent on each connection carries (IPC_F_FD) a copy of
 * fd, which shows the server who we are (peer_proof.h); fd stays the
 * caller's. The frames must not carry a descriptor of their own. */
void ipc_client_set_proof(struct ipc_client *cl, int fd);
/* The same with ipc_conn_send_soon. */
int ipc_client_send_soon(struct ipc_client *cl, struct ipc_out *o);
/* The live connection, or NULL while down. */
struct ipc_conn *ipc_client_conn(const struct ipc_client *cl);
void ipc_client_free(struct ipc_client *cl);

/* Connects to a Unix socket (non-blocking, close-on-exec); fd or -1. */
int ipc_connect_unix(const char *path);
/* Creates a listening Unix socket with the given mode; fd or -1. */
int ipc_listen_unix(const char *path, unsigned mode);

#endif
