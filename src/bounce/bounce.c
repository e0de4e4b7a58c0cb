/*
 * tern-bounce - delivery status notifications for the senders of
 * messages. tern-qmgr hands it (IPC_BOUNCE_WORK, against credits) the
 * messages that have recipients with a DSN flag; for each, tern-bounce
 * reads the message from the queue (read-only, short transactions),
 * composes ONE DSN per kind (failure, delay, success) for the flagged
 * recipients (dsn.c, RFC 3464, with the original headers, or the whole
 * message for RET=FULL), submits it to tern-cleanup as
 * CLEANUP_SOURCE_BOUNCE from the null sender to the original envelope
 * sender, and only after cleanup's 250 tells qmgr which flags are done
 * (IPC_BOUNCE_DONE; qmgr clears them). A crash between the two repeats a
 * DSN, never loses one. A null-sender message never gets a DSN.
 *
 * It runs as the tern user, not chrooted (it reads queue_dir), writes
 * nothing to the queue itself and holds no keys. Once set up it is
 * sandboxed (sandbox.c): it keeps the queue it opened read-only and the
 * VERP key it read, and may open no file nor any TCP connection.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "classify.h"
#include "config.h"
#include "daemon.h"
#include "dsn.h"
#include "dsn_queue.h"
#include "feedback.h"
#include "ipc.h"
#include "log.h"
#include "sandbox.h"
#include "suppress_policy.h"
#include "queue.h"
#include "util.h"
#include "verp.h"

#define BOUNCE_CREDITS		4		/* works asked of qmgr at once */
#define QUEUE_WAIT_SEC		30		/* for a writer to create the queue */
#define HEADERS_MAX		(1024 * 1024)	/* original headers read at most */

static const uint8_t dsn_kinds[] = {
	QUEUE_RF_DSN_FAILURE, QUEUE_RF_DSN_DELAY, QUEUE_RF_DSN_SUCCESS,
};

enum step {
	STEP_IDLE,
	STEP_BEGIN,			/* waiting for BEGIN's reply */
	STEP_RCPT,
	STEP_END,
};

/* One BOUNCE_WORK: a message whose flagged recipients get DSNs. */
struct work {
	struct work *next;
	uint32_t reqid;
	unsigned gen;			/* the qmgr connection it came on */
	uint64_t qid;
	char id[QUEUE_ID_LEN + 1];
	bool feedback;			/* BOUNCE_FEEDBACK: an inbound message */
	struct ipc_out *reply;		/* its FEEDBACK_DONE */
	struct queue_loaded_msg *msg;
	char *original;			/* the content read (maybe headers only) */
	size_t original_len;
	bool original_whole;
	size_t kind;			/* index in dsn_kinds being done */
	uint8_t *done;			/* per loaded recipient: flags done */
	bool retry;
	/* the submission in progress */
	enum step step;
	uint32_t cleanup_reqid;
	char *dsn;
	size_t dsn_len;
	bool eightbit;
};

static struct {
	struct daemon d;
	const struct tern_config *cfg;
	struct queue *q;
	struct ipc_client *qmgr;
	unsigned qmgr_gen;		/* bumped when the connection is lost */
	struct ipc_client *cleanup;
	struct work *head, *tail;	/* works in order; head in progress */
	uint32_t next_reqid;
	uint64_t dsns;			/* composed and committed, for the log */
	uint64_t unique;		/* makes each DSN's Message-ID unique */
	uint8_t verp_key[VERP_KEY_LEN];
	int verp_key_fd;		/* shows qmgr we are tern-bounce */
	struct bounce_classifier *classifier;
	struct bounce_policy policy;
} bn;

static void work_next_kind(struct work *w);
static void work_finish(struct work *w);

/* ---- setup ---- */

/*
 * tern-qmgr takes BOUNCE_READY, and tern-cleanup a DSN, only with a
 * descriptor of the VERP key:
 * tern-bounce opens it now, before its sandbox; tern-smtp, as the same
 * user, never does and after its sandbox cannot.
 */
static void
open_verp_key_proof(void)
{
	char *path = xasprintf("%s/%s", bn.cfg->server.queue_dir,
	    VERP_KEY_FILE);

	bn.verp_key_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (bn.verp_key_fd == -1)
		log_fatal("%s: %s", path, strerror(errno));
	free(path);
}

/*
 * Opens the queue read-only, waiting for a writer (tern-cleanup, started
 * first) to have created it, and reads the VERP key (tern-qmgr makes it;
 * the first of us to start does): the sandbox allows no open later.
 */
static void
open_queue(void)
{
	struct queue_options o;

	queue_options_from_config(&o, bn.cfg, QUEUE_OPEN_READONLY);
	for (int tries = 0; tries < QUEUE_WAIT_SEC * 2; tries++) {
		bn.q = queue_open(&o);
		if (bn.q != NULL)
			break;
		daemon_setup_wait(&bn.d, 500);
	}
	if (bn.q == NULL)
		log_fatal("cannot open the queue %s: %s", o.dir,
		    queue_strerror(queue_last_error()));
	if (verp_key_load(bn.cfg->server.queue_dir, bn.verp_key) == -1)
		log_fatal("cannot read or make %s/%s: %s",
		    bn.cfg->server.queue_dir, VERP_KEY_FILE, strerror(errno));
	open_verp_key_proof();
}

/* ---- reading the original message ---- */

struct reader {
	struct work *w;
	size_t cap;
	size_t want;			/* stop once this much is read */
	bool headers_only;
};

static bool
has_header_end(const char *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\n' && p[i + 1] == '\n')
			return true;
		if (i + 3 < n && memcmp(p + i, "\r\n\r\n", 4) == 0)
			return true;
	}
	return n >= 2 && memcmp(p, "\r\n", 2) == 0;
}

static int
chunk_cb(void *arg, uint32_t index, const void *data, size_t len)
{
	struct reader *r = arg;
	struct work *w = r->w;

	(void)index;
	if (w->original_len + len + 1 > r->cap) {
		r->cap = (w->original_len + len + 1) * 2;
		w->original = xrealloc(w->original, r->cap);
	}
	memcpy(w->original + w->original_len, data, len);
	w->original_len += len;
	w->original[w->original_len] = '\0';
	if (r->headers_only && (has_header_end(w->original, w->original_len) ||
	    w->original_len >= HEADERS_MAX))
		return 1;
	return w->original_len >= r->want ? 1 : 0;
}

/* Reads the whole message when it is to be returned, else its headers. */
static int
read_original(struct work *w)
{
	const struct queue_msg_info *m = &w->msg->info;
	struct reader r;
	uint32_t first = 0, n = 0;
	bool failure = false;

	memset(&r, 0, sizeof(r));
	r.w = w;
	for (size_t i = 0; i < w->msg->n_rcpts; i++)
		if (w->msg->rcpts[i].flags & QUEUE_RF_DSN_FAILURE)
			failure = true;
	/* What dsn_queue.c returns whole: RET=FULL, or a failure without
	 * RET (as Postfix does); up to DSN_FULL_LIMIT. */
	w->original_whole = (m->ret == CLEANUP_RET_FULL ||
	    (m->ret == CLEANUP_RET_DEFAULT && failure)) &&
	    m->size <= DSN_FULL_LIMIT;
	r.headers_only = !w->original_whole;
	r.want = w->original_whole ? m->size : HEADERS_MAX;
	w->original = xstrdup("");
	while (first < m->n_chunks) {
		size_t before = w->original_len;

		if (queue_content_read(bn.q, w->qid, first, 4, chunk_cb, &r,
		    &n) == -1)
			return -1;
		if (n == 0 || (r.headers_only &&
		    (has_header_end(w->original, w->original_len) ||
		    w->original_len >= HEADERS_MAX)) ||
		    (!r.headers_only && w->original_len >= r.want))
			break;
		if (w->original_len == before)
			break;
		first += n;
	}
	return 0;
}

/* ---- talking to qmgr ---- */

/* The first on a connection carries the proof (open_verp_key_proof). */
static void
send_ready(uint32_t credits, bool first)
{
	struct ipc_out *o = ipc_out_new(IPC_BOUNCE_READY, 0);

	ipc_put_u32(o, credits);
	if (first) {
		int fd = dup(bn.verp_key_fd);

		if (fd == -1)
			log_fatal("dup: %s", strerror(errno));
		ipc_out_set_fd(o, fd);
	}
	ipc_client_send(bn.qmgr, o);
}

static void
send_done(struct work *w)
{
	struct ipc_out *o = ipc_out_new(IPC_BOUNCE_DONE, w->reqid);
	uint32_t n = 0;

	if (w->msg != NULL)
		for (size_t i = 0; i < w->msg->n_rcpts; i++)
			if (w->done[i] != 0)
				n++;
	ipc_put_u8(o, w->retry ? BOUNCE_RETRY : BOUNCE_DONE);
	ipc_put_u32(o, n);
	if (w->msg != NULL)
		for (size_t i = 0; i < w->msg->n_rcpts; i++)
			if (w->done[i] != 0) {
				ipc_put_u32(o, w->msg->rcpts[i].index);
				ipc_put_u8(o, w->done[i]);
			}
	/* Lost when qmgr is down: it hands the message out again. */
	ipc_client_send(bn.qmgr, o);
}

/* ---- composing a DSN ---- */

static const char *
kind_name(uint8_t kind)
{
	return kind == QUEUE_RF_DSN_FAILURE ? "non-delivery" :
	    kind == QUEUE_RF_DSN_DELAY ? "delay" : "delivery";
}

/*
 * The remote server's own words from tern-smtp's diagnostic
 * ("host mx[ip] said: 550 5.1.1 text (in reply to RCPT TO command)"),
 * without the code, for Diagnostic-Code: smtp; 550 5.1.1 text. Allocated.
 */
static char *
remote_reply_text(const char *text, unsigned code)
{
	const char *p = text, *said = strstr(text, " said: ");
	char *out, *tail;
	char prefix[16];

	if (code == 0 || strncmp(text, "host ", 5) != 0 || said == NULL)
		return xstrdup(text);
	p = said + 7;
	snprintf(prefix, sizeof(prefix), "%u ", code);
	if (strncmp(p, prefix, strlen(prefix)) == 0)
		p += strlen(prefix);
	out = xstrdup(p);
	tail = strstr(out, " (in reply to ");
	if (tail != NULL && tail[strlen(tail) - 1] == ')')
		*tail = '\0';
	return out;
}

/*
 * Composes the DSN of one kind for the recipients flagged with it
 * (dsn_queue.c maps the records): 0, -1 when none is flagged, 1 when
 * none may be sent (null sender, NOTIFY): the flags are then just done.
 */
static int
compose(struct work *w, uint8_t kind)
{
	struct dsn_build b;
	uint32_t *idx;
	char **texts;
	size_t n = 0;
	int rc;

	idx = xcalloc(w->msg->n_rcpts ? w->msg->n_rcpts : 1, sizeof(*idx));
	for (size_t i = 0; i < w->msg->n_rcpts; i++)
		if (w->msg->rcpts[i].flags & kind)
			idx[n++] = w->msg->rcpts[i].index;
	if (n == 0) {
		free(idx);
		return -1;
	}
	rc = dsn_build_from_queue(&b, w->msg, idx, n, kind,
	    bn.cfg->server.hostname, queue_now_ms() / 1000,
	    bn.cfg->delivery.max_queue_lifetime, ++bn.unique, w->original,
	    w->original_len);
	free(idx);
	if (rc == -1)
		return 1;
	/* Only the headers were read: they are all there is to return. */
	if (!w->original_whole)
		b.report.return_full = false;
	texts = xcalloc(n, sizeof(*texts));
	for (size_t i = 0; i < n; i++) {
		struct dsn_rcpt *d = &b.rcpts[i];

		texts[i] = remote_reply_text(d->text, d->code);
		d->text = texts[i];
		/* A notice's status is of its kind, whatever the attempt said. */
		if (kind == QUEUE_RF_DSN_DELAY && d->status[0] != '4')
			d->status = "4.0.0";
		if (kind == QUEUE_RF_DSN_FAILURE && d->status[0] != '5')
			d->status = "5.0.0";
	}
	free(w->dsn);
	w->dsn = dsn_compose(&b.report, &w->dsn_len, &w->eightbit);
	for (size_t i = 0; i < n; i++)
		free(texts[i]);
	free(texts);
	dsn_build_free(&b);
	return 0;
}

/* ---- submitting through cleanup ---- */

static void
submit_begin(struct work *w)
{
	const struct queue_msg_info *m = &w->msg->info;
	struct ipc_out *o;

	if (++bn.next_reqid == 0)
		bn.next_reqid = 1;
	w->cleanup_reqid = bn.next_reqid;
	w->step = STEP_BEGIN;
	o = ipc_out_new(IPC_CLEANUP_BEGIN, w->cleanup_reqid);
	ipc_put_u8(o, CLEANUP_SOURCE_BOUNCE);
	ipc_put_str(o, "");
	ipc_put_str(o, "localhost");
	ipc_put_str(o, "");
	ipc_put_str(o, bn.cfg->server.hostname);
	ipc_put_str(o, "");
	ipc_put_bool(o, true);
	ipc_put_str(o, "");
	ipc_put_str(o, "");		/* the null sender: no DSN about a DSN */
	ipc_put_u8(o, w->eightbit ? CLEANUP_BODY_8BITMIME : CLEANUP_BODY_7BIT);
	ipc_put_bool(o, m->smtputf8);
	ipc_put_u64(o, w->dsn_len);
	ipc_put_u8(o, CLEANUP_RET_DEFAULT);
	ipc_put_str(o, "");
	if (ipc_client_send(bn.cleanup, o) == -1) {
		/* cleanup is down: try the whole message later. */
		w->step = STEP_IDLE;
		w->retry = true;
		work_finish(w);
	}
}

static void
submit_rcpt(struct work *w)
{
	struct ipc_out *o = ipc_out_new(IPC_CLEANUP_RCPT, w->cleanup_reqid);

	w->step = STEP_RCPT;
	ipc_put_str(o, w->msg->info.sender);
	ipc_put_str(o, "");
	ipc_put_u8(o, CLEANUP_NOTIFY_NEVER);
	ipc_client_send(bn.cleanup, o);
}

static void
submit_data(struct work *w)
{
	w->step = STEP_END;
	for (size_t off = 0; off < w->dsn_len; off += IPC_DATA_CHUNK) {
		size_t n = w->dsn_len - off < IPC_DATA_CHUNK ?
		    w->dsn_len - off : IPC_DATA_CHUNK;
		struct ipc_out *o = ipc_out_new(IPC_CLEANUP_DATA,
		    w->cleanup_reqid);

		ipc_put_data(o, w->dsn + off, n);
		ipc_client_send(bn.cleanup, o);
	}
	ipc_client_send(bn.cleanup, ipc_out_new(IPC_CLEANUP_END,
	    w->cleanup_reqid));
}

/* The kind being submitted is finished (queued, or given up). */
static void
kind_done(struct work *w)
{
	uint8_t kind = dsn_kinds[w->kind];

	for (size_t i = 0; i < w->msg->n_rcpts; i++)
		if (w->msg->rcpts[i].flags & kind)
			w->done[i] |= kind;
	w->step = STEP_IDLE;
	w->kind++;
	work_next_kind(w);
}

static void
cleanup_reply(struct work *w, uint16_t code, const char *status,
    const char *text, const char *queue_id)
{
	uint8_t kind = dsn_kinds[w->kind];

	if (code >= 500) {
		/* A DSN cleanup refuses for good (the sender is suppressed,
		 * or not an address): nothing else would take it either. */
		log_warn("%s: sender %s notification to <%s> refused: %u %s %s; "
		    "given up", w->id, kind_name(kind), w->msg->info.sender, code,
		    status, text);
		if (w->step != STEP_END)
			ipc_client_send(bn.cleanup, ipc_out_new(IPC_CLEANUP_ABORT,
			    w->cleanup_reqid));
		kind_done(w);
		return;
	}
	if (code >= 400) {
		log_warn("%s: sender %s notification to <%s> deferred: %u %s %s",
		    w->id, kind_name(kind), w->msg->info.sender, code, status,
		    text);
		if (w->step != STEP_END)
			ipc_client_send(bn.cleanup, ipc_out_new(IPC_CLEANUP_ABORT,
			    w->cleanup_reqid));
		w->step = STEP_IDLE;
		w->retry = true;
		work_finish(w);
		return;
	}
	switch (w->step) {
	case STEP_BEGIN:
		submit_rcpt(w);
		break;
	case STEP_RCPT:
		submit_data(w);
		break;
	case STEP_END:
		bn.dsns++;
		log_info("%s: sender %s notification: %s", w->id, kind_name(kind),
		    queue_id[0] ? queue_id : "?");
		kind_done(w);
		break;
	default:
		break;
	}
}

static void
cleanup_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	const char *status, *text, *queue_id;
	uint16_t code;
	struct work *w = bn.head;

	(void)arg;
	if (m->type != IPC_CLEANUP_REPLY || ipc_get_u16(m, &code) == -1 ||
	    ipc_get_str(m, &status) == -1 || ipc_get_str(m, &text) == -1 ||
	    ipc_get_str(m, &queue_id) == -1 || ipc_msg_end(m) == -1 ||
	    code < 200 || code > 599) {
		ipc_conn_protocol_error(c, "malformed or unexpected %s from "
		    "cleanup", ipc_type_name(m->type) ? ipc_type_name(m->type) :
		    "message");
		return;
	}
	if (w == NULL || w->step == STEP_IDLE || m->reqid != w->cleanup_reqid)
		return;		/* a transaction given up already */
	cleanup_reply(w, code, status, text, queue_id);
}

static void
cleanup_state_cb(struct ipc_client *cl, bool up, void *arg)
{
	struct work *w = bn.head;

	(void)cl;
	(void)arg;
	if (up) {
		log_info("connected to cleanup");
		return;
	}
	/* A submission in flight got no answer: maybe committed, maybe not.
	 * Doing it again may duplicate the DSN; not doing it may lose it. */
	if (w != NULL && w->step != STEP_IDLE) {
		w->step = STEP_IDLE;
		w->retry = true;
		work_finish(w);
	}
}

/* ---- inbound feedback ---- */

static void
load_policy(void)
{
	const struct tern_config *cfg = bn.cfg;
	struct config_errors errs;

	memset(&errs, 0, sizeof(errs));
	bn.classifier = bounce_classifier_load(cfg->bounce.classes_file, &errs);
	if (bn.classifier == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			log_warn("%s:%d: %s", errs.v[i].file ? errs.v[i].file : "",
			    errs.v[i].line, errs.v[i].message);
		log_fatal("cannot load the bounce classes");
	}
	config_errors_free(&errs);
	bounce_policy_from_config(&bn.policy, cfg);
}

/* The result of parsing, for the reply. */
struct fb_event {
	uint8_t type;
	uint64_t qid;
	uint32_t rcpt;
	const char *recipient;
	uint16_t code;
	const char *status;
	char *text;
	const char *bounce_class;
};

struct fb_supp {
	const char *address;
	uint8_t kind;			/* enum feedback_supp_kind */
	uint8_t source;
	char *reason;
	int64_t expires_ms;
	uint64_t qid;
};

static void
feedback_reply(struct work *w, uint8_t outcome, const char *summary,
    const struct fb_event *ev, size_t n_ev, const struct fb_supp *sp,
    size_t n_sp)
{
	struct ipc_out *o = ipc_out_new(IPC_BOUNCE_FEEDBACK_DONE, w->reqid);
	size_t k = w->msg != NULL ? w->msg->n_rcpts : 0;

	ipc_put_u8(o, outcome);
	ipc_put_str(o, summary);
	ipc_put_u32(o, (uint32_t)k);
	for (size_t i = 0; i < k; i++)
		ipc_put_u32(o, w->msg->rcpts[i].index);
	ipc_put_u32(o, (uint32_t)n_ev);
	for (size_t i = 0; i < n_ev; i++) {
		ipc_put_u8(o, ev[i].type);
		ipc_put_u64(o, ev[i].qid);
		ipc_put_u32(o, ev[i].rcpt);
		ipc_put_str(o, ev[i].recipient);
		ipc_put_u16(o, ev[i].code);
		ipc_put_str(o, ev[i].status);
		ipc_put_str(o, ev[i].text);
		ipc_put_str(o, ev[i].bounce_class);
	}
	ipc_put_u32(o, (uint32_t)n_sp);
	for (size_t i = 0; i < n_sp; i++) {
		ipc_put_str(o, sp[i].address);
		ipc_put_u8(o, sp[i].kind);
		ipc_put_u8(o, sp[i].source);
		ipc_put_str(o, sp[i].reason);
		ipc_put_i64(o, sp[i].expires_ms);
		ipc_put_u64(o, sp[i].qid);
	}
	if (w->reply != NULL)
		ipc_out_free(w->reply);
	w->reply = o;
}

struct rcpt_lookup {
	uint32_t index;
	char address[QUEUE_ADDRESS_MAX + 1];
};

static int
rcpt_event_cb(void *arg, const struct queue_event *e)
{
	struct rcpt_lookup *l = arg;

	if (e->rcpt_index == l->index && e->recipient[0] != '\0') {
		tern_strlcpy(l->address, e->recipient, sizeof(l->address));
		return 1;
	}
	return 0;
}

/* Reads the whole inbound message, up to what the parser looks at. */
static int
read_all(struct work *w, size_t limit)
{
	struct reader r;
	uint32_t first = 0, n = 0;

	memset(&r, 0, sizeof(r));
	r.w = w;
	r.want = w->msg->info.size < limit ? w->msg->info.size : limit;
	w->original = xstrdup("");
	while (first < w->msg->info.n_chunks && w->original_len < r.want) {
		if (queue_content_read(bn.q, w->qid, first, 4, chunk_cb, &r,
		    &n) == -1)
			return -1;
		if (n == 0)
			break;
		first += n;
	}
	return 0;
}

/*
 * Parses an inbound message (feedback.c) and finds the message and
 * recipient it is about from the VERP address it was sent to. Results
 * become events (an asynchronous bounce, a complaint) and suppressions
 * (policy.c); mail that is no report, or no report about our mail, is
 * kept for the operator.
 */
static void
feedback_work(struct work *w)
{
	struct feedback_item *items;
	/* Zeroed: -O2 without sanitizers cannot see that only the first
	 * n_ev and n_sp are read. */
	struct fb_event ev[FEEDBACK_MAX_ITEMS] = { 0 };
	struct fb_supp sp[FEEDBACK_MAX_ITEMS] = { 0 };
	size_t n_items = 0, n_ev = 0, n_sp = 0;
	uint64_t oqid = 0;
	uint32_t orcpt = 0;
	bool found = false;
	struct rcpt_lookup look;
	char summary[600];
	char oid[QUEUE_ID_LEN + 1];
	int64_t now = queue_now_ms();

	if (read_all(w, FEEDBACK_MAX_INPUT) == -1) {
		log_warn("%s: cannot read the message content: %s", w->id,
		    queue_strerror(queue_last_error()));
		feedback_reply(w, FEEDBACK_RETRY, "content not readable", NULL,
		    0, NULL, 0);
		return;
	}
	for (size_t i = 0; i < w->msg->n_rcpts && !found; i++)
		if (verp_decode(bn.verp_key, w->msg->rcpts[i].address, &oqid,
		    &orcpt) == 0)
			found = true;
	items = xcalloc(FEEDBACK_MAX_ITEMS, sizeof(*items));
	if (feedback_parse(w->original, w->original_len, items,
	    FEEDBACK_MAX_ITEMS, &n_items) == -1) {
		feedback_reply(w, FEEDBACK_KEEP, "not a DSN, ARF report or "
		    "recognizable bounce", NULL, 0, NULL, 0);
		free(items);
		return;
	}
	if (!found) {
		snprintf(summary, sizeof(summary), "a report to no return path "
		    "of ours (to=<%s>)", w->msg->n_rcpts ?
		    w->msg->rcpts[0].address : "");
		feedback_reply(w, FEEDBACK_KEEP, summary, NULL, 0, NULL, 0);
		free(items);
		return;
	}
	/* The recipient it is about: from the original's events. */
	memset(&look, 0, sizeof(look));
	look.index = orcpt;
	if (queue_events_for(bn.q, oqid, rcpt_event_cb, &look) == -1)
		look.address[0] = '\0';
	queue_id_format(oqid, oid);
	snprintf(summary, sizeof(summary), "%zu report(s) about %s", n_items,
	    oid);
	for (size_t i = 0; i < n_items; i++) {
		struct feedback_item *it = &items[i];
		const char *addr = look.address[0] ? look.address : it->recipient;
		struct suppression_verdict v;
		struct fb_event *e = &ev[n_ev];
		bool complaint = it->kind == FEEDBACK_COMPLAINT;

		if (addr[0] == '\0')
			continue;
		if (it->kind != FEEDBACK_FAILED && it->kind != FEEDBACK_DELAYED &&
		    !complaint)
			continue;
		memset(e, 0, sizeof(*e));
		e->qid = oqid;
		e->rcpt = orcpt;
		e->recipient = addr;
		e->code = (uint16_t)it->code;
		e->status = it->status;
		if (complaint) {
			e->type = QUEUE_EVENT_COMPLAINT;
			e->text = xasprintf("complaint (%s%s%s)",
			    it->feedback_type[0] ? it->feedback_type : "abuse",
			    it->remote_mta[0] ? " from " : "", it->remote_mta);
			e->bounce_class = "";
		} else {
			e->type = it->kind == FEEDBACK_FAILED ?
			    QUEUE_EVENT_BOUNCED : QUEUE_EVENT_DEFERRED;
			e->text = xasprintf("async: %s", it->diagnostic);
			e->bounce_class = bounce_classify(bn.classifier, it->code,
			    it->status, it->diagnostic);
		}
		n_ev++;
		log_info("%s: to=<%s>, relay=none, dsn=%s, status=%s (%s)", oid,
		    addr, it->status[0] ? it->status : "-",
		    complaint ? "complaint" : it->kind == FEEDBACK_FAILED ?
		    "bounced" : "deferred", e->text);
		if (it->kind == FEEDBACK_DELAYED)
			continue;
		bounce_policy_decide(&bn.policy, complaint, it->code,
		    it->status, e->bounce_class, now, &v);
		if (!v.suppress && !v.count_soft)
			continue;
		/* A soft bounce is counted by qmgr in the queue, with the
		 * address's earlier ones (queue_update_soft_failure). */
		sp[n_sp].kind = v.suppress ? FEEDBACK_SUPPRESS_NOW :
		    FEEDBACK_SOFT_FAILURE;
		sp[n_sp].address = addr;
		sp[n_sp].source = v.source;
		sp[n_sp].reason = complaint ? xasprintf("complaint (%s)",
		    it->feedback_type[0] ? it->feedback_type : "abuse") :
		    xasprintf("async bounce %s %s", it->status, it->diagnostic);
		if (strlen(sp[n_sp].reason) > 900)
			sp[n_sp].reason[900] = '\0';
		sp[n_sp].expires_ms = v.expires_ms;
		sp[n_sp].qid = oqid;
		n_sp++;
	}
	feedback_reply(w, FEEDBACK_PARSED, summary, ev, n_ev, sp, n_sp);
	for (size_t i = 0; i < n_ev; i++)
		free(ev[i].text);
	for (size_t i = 0; i < n_sp; i++)
		free(sp[i].reason);
	free(items);
}

/* ---- works ---- */

static void
work_free(struct work *w)
{
	if (w->msg != NULL)
		queue_loaded_free(w->msg);
	if (w->reply != NULL)
		ipc_out_free(w->reply);
	free(w->original);
	free(w->done);
	free(w->dsn);
	free(w);
}

static void work_start(void);

/* Answers qmgr and goes on with the next work. */
static void
work_finish(struct work *w)
{
	TERN_ASSERT(w == bn.head);
	/* A work of a lost connection is not answered: qmgr has handed it
	 * out again already. */
	if (w->gen != bn.qmgr_gen) {
		/* nothing */
	} else if (w->feedback) {
		if (w->reply == NULL)
			feedback_reply(w, FEEDBACK_RETRY, "not read", NULL, 0,
			    NULL, 0);
		ipc_client_send(bn.qmgr, w->reply);
		w->reply = NULL;
	} else {
		send_done(w);
	}
	bn.head = w->next;
	if (bn.head == NULL)
		bn.tail = NULL;
	work_free(w);
	if (bn.d.draining && bn.head == NULL) {
		daemon_exit(&bn.d);
		return;
	}
	work_start();
}

/* Submits the DSN of the next kind with flagged recipients. */
static void
work_next_kind(struct work *w)
{
	while (w->kind < TERN_ARRAY_LEN(dsn_kinds)) {
		int rc = compose(w, dsn_kinds[w->kind]);

		if (rc == 0) {
			submit_begin(w);
			return;
		}
		if (rc == 1) {
			/* Not to be sent (NOTIFY, null sender): just done. */
			kind_done(w);
			return;
		}
		w->kind++;
	}
	work_finish(w);
}

static void
work_start(void)
{
	struct work *w = bn.head;
	const struct queue_msg_info *m;

	if (w == NULL || w->msg != NULL || w->step != STEP_IDLE)
		return;
	if (queue_load(bn.q, w->qid, &w->msg) == -1) {
		enum queue_err e = queue_last_error();

		w->msg = NULL;
		if (e != QUEUE_ERR_NOTFOUND) {
			log_warn("%s: cannot read the message: %s", w->id,
			    queue_strerror(e));
			w->retry = true;
		}
		work_finish(w);
		return;
	}
	m = &w->msg->info;
	w->done = xcalloc(w->msg->n_rcpts ? w->msg->n_rcpts : 1, 1);
	if (w->feedback) {
		feedback_work(w);
		work_finish(w);
		return;
	}
	if (m->sender[0] == '\0') {
		/* Never a DSN for a null-sender message (a DSN itself). */
		for (size_t i = 0; i < w->msg->n_rcpts; i++)
			w->done[i] = w->msg->rcpts[i].flags & QUEUE_RF_DSN_MASK;
		work_finish(w);
		return;
	}
	if (read_original(w) == -1) {
		log_warn("%s: cannot read the message content: %s", w->id,
		    queue_strerror(queue_last_error()));
		w->retry = true;
		work_finish(w);
		return;
	}
	w->kind = 0;
	work_next_kind(w);
}

static void
qmgr_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	const char *id;
	struct work *w;

	(void)arg;
	if ((m->type != IPC_BOUNCE_WORK && m->type != IPC_BOUNCE_FEEDBACK) ||
	    ipc_get_str(m, &id) == -1 || ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(c, "malformed or unexpected %s from qmgr",
		    ipc_type_name(m->type) ? ipc_type_name(m->type) : "message");
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->reqid = m->reqid;
	w->feedback = m->type == IPC_BOUNCE_FEEDBACK;
	w->gen = bn.qmgr_gen;
	if (queue_id_parse(id, &w->qid) == -1) {
		ipc_conn_protocol_error(c, "BOUNCE_WORK with a bad queue id");
		free(w);
		return;
	}
	queue_id_format(w->qid, w->id);
	if (bn.tail != NULL)
		bn.tail->next = w;
	else
		bn.head = w;
	bn.tail = w;
	if (w == bn.head)
		work_start();
}

static void
qmgr_state_cb(struct ipc_client *cl, bool up, void *arg)
{
	struct work *w, *next;

	(void)cl;
	(void)arg;
	if (up) {
		log_info("connected to qmgr");
		send_ready(BOUNCE_CREDITS, true);
		return;
	}
	/* qmgr hands out what it gave us again; the one in progress
	 * finishes (its answer is lost, so it is redone: a duplicate). */
	bn.qmgr_gen++;
	w = bn.head != NULL ? bn.head->next : NULL;
	if (bn.head != NULL)
		bn.head->next = NULL;
	bn.tail = bn.head;
	for (; w != NULL; w = next) {
		next = w->next;
		work_free(w);
	}
}

/* ---- drain ---- */

static void
bounce_drain(struct daemon *d)
{
	struct work *w, *next;

	(void)d;
	/* The work in progress finishes; those waiting are redone by qmgr. */
	if (bn.head == NULL) {
		daemon_exit(&bn.d);
		return;
	}
	for (w = bn.head->next; w != NULL; w = next) {
		next = w->next;
		work_free(w);
	}
	bn.head->next = NULL;
	bn.tail = bn.head;
}

static const struct daemon_spec bounce_spec = {
	.name = "bounce",
	.chroot_run_dir = false,
	.drain = bounce_drain,
};

int
main(int argc, char **argv)
{
	struct daemon *d = &bn.d;
	char path[4096];
	int rc;

	daemon_init(d, &bounce_spec, argc, argv);
	bn.cfg = d->cfg;
	load_policy();
	open_queue();
	daemon_service_path(d, "cleanup", path, sizeof(path));
	bn.cleanup = ipc_client_new(d->base, path, "bounce", cleanup_msg_cb,
	    cleanup_state_cb, NULL);
	/* cleanup takes a DSN (CLEANUP_SOURCE_BOUNCE) only with it too. */
	ipc_client_set_proof(bn.cleanup, bn.verp_key_fd);
	daemon_service_path(d, "qmgr", path, sizeof(path));
	bn.qmgr = ipc_client_new(d->base, path, "bounce", qmgr_msg_cb,
	    qmgr_state_cb, NULL);
	/* Nothing left to open: no file, no TCP (sandbox.c). */
	sandbox_enter(sandbox_new());
	log_info("bounce started");
	rc = daemon_run(d);
	while (bn.head != NULL) {
		struct work *w = bn.head;

		bn.head = w->next;
		work_free(w);
	}
	ipc_client_free(bn.qmgr);
	ipc_client_free(bn.cleanup);
	bounce_classifier_free(bn.classifier);
	queue_close(bn.q);
	return rc;
}
