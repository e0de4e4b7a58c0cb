/*
 * txn.c - one message's way through tern-cleanup, in the order of the
 * conversation (see IPC_CLEANUP_* in ipc.h): BEGIN checks the sender,
 * RCPT each recipient (syntax, suppression), DATA streams the content
 * through the reader, header fix-ups and the signer, END waits for the
 * signature, hands the message to the group committer and answers 250
 * only after the commit that holds it. Runs in tern-cleanup, the queue
 * writer.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "cleanup.h"
#include "fixup.h"
#include "log.h"
#include "message.h"
#include "signer_client.h"
#include "util.h"
#include "validate.h"

#define INFO_FIELD_MAX	255	/* client name, helo, tls: informational */
#define ENVID_MAX	100	/* RFC 3461 section 4.4 */
#define ORCPT_MAX	500
#define SIGN_BATCH	(256 * 1024)	/* content held back from the signer */
#define SENDER_OWN_MAX	(PEER_USER_MAX + 256)	/* user@hostname */

enum txn_state {
	TXN_ENVELOPE,			/* BEGIN and RCPTs */
	TXN_DATA,			/* content arriving */
	TXN_SIGNING,			/* END received, waiting for the signer */
	TXN_COMMITTING,			/* handed to the committer */
};

struct txn {
	struct txn *next;		/* in the client's list */
	struct client *client;		/* NULL once the client left */
	uint32_t reqid;
	enum txn_state state;

	/* The envelope (BEGIN). */
	uint8_t source;
	char *client_name;
	char *client_addr;
	char *helo;
	char *auth_user;
	char *tls;
	char *sender;
	uint8_t body;
	bool smtputf8;
	uint8_t ret;
	char *envid;
	/* A local user's submission on the public socket (identity from
	 * the kernel, in auth_user); sender_set_by: the sender is not the
	 * user's own and the user is not privileged, logged at commit. */
	bool is_local_user;
	bool sender_set_by;

	/* Recipients (RCPT) until the header section ends, then in qm. */
	struct txn_rcpt {
		char *address;
		char *orcpt;
		uint8_t notify;
	} *rcpts;
	size_t n_rcpts;
	size_t cap_rcpts;

	/* The content. */
	struct msg_reader reader;
	struct fixup_result fix;
	struct queue_msg *qm;		/* created once the headers are known */
	bool content_open;		/* qm takes the final content */
	uint64_t provisional_qid;
	char qid_text[QUEUE_ID_LEN + 1];	/* provisional, for logs */
	uint64_t committed_size;

	/* Signing. */
	struct signer_job *sign;	/* in flight, or NULL */
	uint64_t sign_sent;		/* bytes of content sent to it */
	char sign_domain[256];
	bool sign_done;
	int sign_status;
	char *sign_error;
	char **sig_headers;
	size_t n_sig;

	/* The first refusal; further content is then ignored. */
	unsigned fail_code;
	bool fail_logged;		/* its reject line is written already */
	const char *fail_status;
	char *fail_text;

	/* The commit's outcome (set on the committer thread). */
	enum queue_err commit_status;
	uint64_t qid;
	struct txn *done_next;
};

static void txn_commit(struct txn *t);

/* ---- replies and bookkeeping ---- */

static void
reply(struct client *cl, uint32_t reqid, unsigned code, const char *status,
    const char *text, const char *qid)
{
	struct ipc_out *o;

	if (cl == NULL)
		return;
	o = ipc_out_new(IPC_CLEANUP_REPLY, reqid);
	ipc_put_u16(o, (uint16_t)code);
	ipc_put_str(o, status);
	ipc_put_str(o, text);
	ipc_put_str(o, qid);
	ipc_conn_send(cl->conn, o);
}

static struct txn *
txn_find(struct client *cl, uint32_t reqid)
{
	for (struct txn *t = cl->txns; t != NULL; t = t->next)
		if (t->reqid == reqid)
			return t;
	return NULL;
}

/* Takes t out of its client's list (it may go on unanswered). */
static void
txn_detach(struct txn *t)
{
	struct txn **pp;

	if (t->client == NULL)
		return;
	for (pp = &t->client->txns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			cleanup.n_open--;
			break;
		}
	t->client = NULL;
	t->next = NULL;
	/* A drain may have waited for this transaction. */
	cleanup_maybe_exit();
}

static void
txn_free(struct txn *t)
{
	txn_detach(t);
	if (t->sign != NULL)
		signer_job_abort(t->sign);
	free(t->client_name);
	free(t->client_addr);
	free(t->helo);
	free(t->auth_user);
	free(t->tls);
	free(t->sender);
	free(t->envid);
	for (size_t i = 0; i < t->n_rcpts; i++) {
		free(t->rcpts[i].address);
		free(t->rcpts[i].orcpt);
	}
	free(t->rcpts);
	msg_reader_free(&t->reader);
	fixup_result_free(&t->fix);
	queue_msg_free(t->qm);
	free(t->sign_error);
	for (size_t i = 0; i < t->n_sig; i++)
		free(t->sig_headers[i]);
	free(t->sig_headers);
	free(t->fail_text);
	free(t);
}

/* Remembers the first refusal and drops what was kept of the content. */
static void
txn_fail(struct txn *t, unsigned code, const char *status, const char *text)
{
	if (t->fail_code != 0)
		return;
	t->fail_code = code;
	t->fail_status = status;
	t->fail_text = xstrdup(text);
	if (t->sign != NULL) {
		signer_job_abort(t->sign);
		t->sign = NULL;
	}
	if (t->content_open) {
		t->content_open = false;
		queue_msg_drop_content(t->qm);
	}
}

/* A field cut to a length and stripped of control bytes (informational
 * fields only: they end up in logs and in the Received field). */
static char *
info_field(const char *s, size_t max)
{
	char *c = xstrndup(s, max);

	for (char *p = c; *p != '\0'; p++)
		if ((unsigned char)*p < 32 || *p == 127)
			*p = '?';
	return c;
}

/* The client for log lines: "name[addr]", "local" for sendmail, with
 * the kernel's identity for the public socket. */
static const char *
client_label(const struct txn *t, char *buf, size_t size)
{
	if (t->is_local_user)
		snprintf(buf, size, "local (%s)", t->auth_user);
	else if (*t->client_addr == '\0')
		snprintf(buf, size, "local");
	else
		snprintf(buf, size, "%s[%s]", *t->client_name ? t->client_name
		    : "unknown", t->client_addr);
	return buf;
}

/* ---- BEGIN ---- */

static void
on_begin(struct client *cl, struct ipc_msg *m)
{
	uint8_t source, body, ret;
	const char *listener, *client_name, *client_addr, *helo, *auth, *tls;
	const char *sender, *envid;
	char local_auth[128];
	bool trusted, smtputf8;
	uint64_t declared;
	struct verdict v;
	struct txn *t;
	uint64_t limit = cleanup.d.cfg->server.message_size_limit;

	if (ipc_get_u8(m, &source) == -1 || ipc_get_str(m, &listener) == -1 ||
	    ipc_get_str(m, &client_name) == -1 ||
	    ipc_get_str(m, &client_addr) == -1 || ipc_get_str(m, &helo) == -1 ||
	    ipc_get_str(m, &auth) == -1 || ipc_get_bool(m, &trusted) == -1 ||
	    ipc_get_str(m, &tls) == -1 || ipc_get_str(m, &sender) == -1 ||
	    ipc_get_u8(m, &body) == -1 || ipc_get_bool(m, &smtputf8) == -1 ||
	    ipc_get_u64(m, &declared) == -1 || ipc_get_u8(m, &ret) == -1 ||
	    ipc_get_str(m, &envid) == -1 || ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(cl->conn, "malformed CLEANUP_BEGIN");
		return;
	}
	if (cl->is_local_user) {
		/* A local user is what the kernel says, nothing it claims:
		 * not smtpd, not an authenticated or relay-trusted client. */
		peercred_auth_text(&cl->peer, local_auth, sizeof(local_auth));
		source = CLEANUP_SOURCE_SENDMAIL;
		listener = "sendmail";
		client_name = "localhost";
		client_addr = "";
		helo = "";
		auth = local_auth;
		trusted = false;
		tls = "";
	}
	/* Neither is recorded yet; they are overridden all the same. */
	(void)listener;
	(void)trusted;
	if (source < CLEANUP_SOURCE_SUBMISSION || source > CLEANUP_SOURCE_HTTP ||
	    body > CLEANUP_BODY_BINARYMIME || ret > CLEANUP_RET_HDRS) {
		ipc_conn_protocol_error(cl->conn, "CLEANUP_BEGIN: source, body or "
		    "ret out of range");
		return;
	}
	if (txn_find(cl, m->reqid) != NULL) {
		ipc_conn_protocol_error(cl->conn, "CLEANUP_BEGIN: transaction %"
		    PRIu32 " already open", m->reqid);
		return;
	}
	/* What tern-smtpd may claim: never to be tern-bounce or a local
	 * user, whose senders are not checked (tern-cleanup(8)). */
	if (validate_source(cl->is_smtpd, source, &v) == -1) {
		char *shown = info_field(sender, INFO_FIELD_MAX);

		log_warn("NOQUEUE: reject: MAIL from tern-smtpd's socket claiming "
		    "source %s (sender=<%s>): %u %s %s",
		    cleanup_source_name(source), shown, v.code, v.status, v.text);
		free(shown);
		reply(cl, m->reqid, v.code, v.status, v.text, "");
		return;
	}
	/* On the private socket the source must match what the client
	 * showed with its first frame: a sandboxed tern-smtp shows nothing
	 * (tern-cleanup(8)). */
	if (cl->is_private && cl->proof != (source == CLEANUP_SOURCE_BOUNCE ?
	    CLIENT_PROOF_BOUNCE : CLIENT_PROOF_PRIVATE)) {
		char *shown = info_field(sender, INFO_FIELD_MAX);
		pid_t pid = 0;
		uid_t uid = 0;
		gid_t gid = 0;

		(void)ipc_conn_peer_cred(cl->conn, &pid, &uid, &gid);
		log_warn("NOQUEUE: reject: MAIL from pid %ld on the private "
		    "socket claiming source %s (sender=<%s>): no descriptor of "
		    "%s came with its first frame: 451 4.7.0",
		    (long)pid, cleanup_source_name(source),
		    shown, source == CLEANUP_SOURCE_BOUNCE ?
		    "queue_dir/verp.key" : "run_dir/private");
		free(shown);
		/* Temporary: tern-bounce and tern-pickup keep the message and
		 * try again (say the VERP key was replaced: after a reload). */
		reply(cl, m->reqid, 451, "4.7.0", "Not authorized to submit as "
		    "this source", "");
		return;
	}
	if (cleanup.d.draining) {
		reply(cl, m->reqid, 421, "4.3.2", "Service shutting down", "");
		return;
	}
	/* A local user cannot hold many messages in memory at once. */
	if (cl->is_local_user && cl->txns != NULL) {
		reply(cl, m->reqid, 452, "4.5.3", "One transaction at a time on "
		    "the sendmail socket", "");
		return;
	}
	if (validate_sender(cleanup.d.cfg, source, sender, smtputf8, &v) == -1) {
		/* Nothing unchecked reaches the log as it came. */
		char *name = info_field(*client_name ? client_name : "unknown",
		    INFO_FIELD_MAX);
		char *addr = info_field(*client_addr ? client_addr : "local",
		    INFO_FIELD_MAX);

		if (cl->is_local_user)
			log_info("NOQUEUE: reject: MAIL from local (%s): %u %s %s",
			    local_auth, v.code, v.status, v.text);
		else
			log_info("NOQUEUE: reject: MAIL from %s[%s]: %u %s %s", name,
			    addr, v.code, v.status, v.text);
		free(name);
		free(addr);
		reply(cl, m->reqid, v.code, v.status, v.text, "");
		return;
	}
	if (strlen(envid) > ENVID_MAX) {
		reply(cl, m->reqid, 501, "5.5.4", "ENVID parameter too long", "");
		return;
	}
	if (limit > 0 && declared > limit) {
		reply(cl, m->reqid, 552, "5.3.4", "Message size exceeds fixed limit",
		    "");
		return;
	}

	t = xcalloc(1, sizeof(*t));
	t->reqid = m->reqid;
	t->client = cl;
	t->state = TXN_ENVELOPE;
	t->source = source;
	t->client_name = info_field(client_name, INFO_FIELD_MAX);
	t->client_addr = info_field(client_addr, INFO_FIELD_MAX);
	t->helo = info_field(helo, INFO_FIELD_MAX);
	t->auth_user = info_field(auth, INFO_FIELD_MAX);
	t->tls = info_field(tls, INFO_FIELD_MAX);
	t->sender = xstrdup(sender);
	t->body = body;
	t->smtputf8 = smtputf8;
	t->ret = ret;
	t->envid = xstrdup(envid);
	if (cl->is_local_user) {
		char own[SENDER_OWN_MAX];

		peercred_default_sender(&cl->peer, cleanup.d.cfg->server.hostname,
		    own, sizeof(own));
		t->is_local_user = true;
		t->sender_set_by = !is_peer_privileged(&cl->peer, geteuid()) &&
		    !is_ascii_strcaseeq(sender, own);
	}
	t->next = cl->txns;
	cl->txns = t;
	cleanup.n_open++;
	/* The queue id now, as Postfix's when its queue file is opened: the
	 * client logs it with the first recipient, before this message's
	 * other lines (pflogsumm counts a message received only so). */
	t->provisional_qid = queue_qid_new();
	queue_id_format(t->provisional_qid, t->qid_text);
	reply(cl, m->reqid, 250, "2.1.0", "Ok", t->qid_text);
}

/* ---- RCPT ---- */

/* The suppression event for a refused recipient, committed with the
 * next group. */
static void
suppressed_event(const char *address, const char *reason)
{
	struct queue_event e;

	memset(&e, 0, sizeof(e));
	e.type = QUEUE_EVENT_SUPPRESSED;
	e.recipient = address;
	e.code = 550;
	e.status = "5.7.1";
	e.text = reason;
	e.remote_host = "";
	e.bounce_class = "";
	queue_committer_submit_event(cleanup.committer, &e);
}

static void
on_rcpt(struct client *cl, struct ipc_msg *m)
{
	const char *address, *orcpt;
	uint8_t notify;
	struct txn *t;
	struct address a;
	struct verdict v;
	struct queue_supp_hit hit;
	char label[300];
	struct txn_rcpt *r;
	char qualified[300];

	if (ipc_get_str(m, &address) == -1 || ipc_get_str(m, &orcpt) == -1 ||
	    ipc_get_u8(m, &notify) == -1 || ipc_msg_end(m) == -1 ||
	    (notify & ~0x0f) != 0) {
		ipc_conn_protocol_error(cl->conn, "malformed CLEANUP_RCPT");
		return;
	}
	if ((t = txn_find(cl, m->reqid)) == NULL) {
		reply(cl, m->reqid, 503, "5.5.1", "No transaction", "");
		return;
	}
	if (t->state != TXN_ENVELOPE) {
		reply(cl, m->reqid, 503, "5.5.1", "Recipient after content", "");
		return;
	}
	/* RFC 5321 4.5.1: "postmaster" alone must be taken; it is this
	 * host's. */
	if (is_ascii_strcaseeq(address, "postmaster")) {
		snprintf(qualified, sizeof(qualified), "postmaster@%s",
		    cleanup.d.cfg->server.hostname);
		address = qualified;
	}
	if (validate_recipient(address, t->smtputf8, &a, &v) == -1) {
		log_info("NOQUEUE: reject: RCPT from %s: %u %s %s; from=<%s>",
		    client_label(t, label, sizeof(label)), v.code, v.status,
		    v.text, t->sender);
		reply(cl, m->reqid, v.code, v.status, v.text, "");
		return;
	}
	if (strlen(orcpt) > ORCPT_MAX) {
		reply(cl, m->reqid, 501, "5.5.4", "ORCPT parameter too long", "");
		return;
	}
	if (t->n_rcpts >= QUEUE_RCPT_MAX) {
		reply(cl, m->reqid, 452, "4.5.3", "Too many recipients", "");
		return;
	}
	if (queue_suppress_check(cleanup.q, &address, 1, queue_now_ms(),
	    &hit) == -1) {
		log_warn("suppression look-up for <%s> failed: %s", address,
		    queue_strerror(queue_last_error()));
		reply(cl, m->reqid, 451, "4.3.0", "Temporary lookup failure", "");
		return;
	}
	if (hit.found) {
		char text[400], detail[300];

		snprintf(text, sizeof(text), "<%s>: Recipient address rejected: "
		    "address is on the suppression list", address);
		snprintf(detail, sizeof(detail), "suppressed (%s%s%s)",
		    queue_supp_source_name(hit.source) ?
		    queue_supp_source_name(hit.source) : "unknown",
		    *hit.reason ? ": " : "", hit.reason);
		log_info("NOQUEUE: reject: RCPT from %s: 550 5.7.1 %s: %s; "
		    "from=<%s> to=<%s>", client_label(t, label, sizeof(label)),
		    text, detail, t->sender, address);
		suppressed_event(address, detail);
		reply(cl, m->reqid, 550, "5.7.1", text, "");
		return;
	}
	if (t->n_rcpts == t->cap_rcpts) {
		t->cap_rcpts = t->cap_rcpts ? t->cap_rcpts * 2 : 4;
		t->rcpts = xreallocarray(t->rcpts, t->cap_rcpts, sizeof(*t->rcpts));
	}
	r = &t->rcpts[t->n_rcpts++];
	r->address = xstrdup(address);
	r->orcpt = xstrdup(orcpt);
	r->notify = notify;
	reply(cl, m->reqid, 250, "2.1.5", "Ok", "");
}

/* ---- DATA: the content streams through reader, fix-ups, signer ---- */

/*
 * The content goes to the signer from the queue message that holds it,
 * SIGN_BATCH bytes at a time and the rest at END (all: true): a message
 * below that size reaches the signer as one burst of frames, which it
 * reads in one wake-up and hashes in one pass, instead of a few frames per
 * piece the client sent.
 */
static void
sign_send(struct txn *t, bool all)
{
	uint64_t len = t->content_open ? queue_msg_size(t->qm) : 0;

	if (t->sign == NULL || len <= t->sign_sent ||
	    (!all && len - t->sign_sent < SIGN_BATCH))
		return;
	while (t->sign_sent < len) {
		const void *p;
		size_t n = queue_msg_content_at(t->qm, t->sign_sent, &p);

		TERN_ASSERT(n > 0);
		signer_job_data(t->sign, p, n);
		t->sign_sent += n;
	}
}

/* Appends final content and feeds the signer. */
static void
content_out(void *arg, const char *p, size_t n)
{
	struct txn *t = arg;

	if (!t->content_open)
		return;
	queue_msg_append(t->qm, p, n);
	sign_send(t, false);
}

/* Appends final content only. */
static void
content_add(void *arg, const char *p, size_t n)
{
	struct txn *t = arg;

	queue_msg_append(t->qm, p, n);
}

/* A unique left part for a new Message-ID. Made for every message (it
 * is used only when the message has none): random bytes are fetched 64
 * messages' worth at a time and the pid once, not two system calls per
 * message. */
static void
unique_id(char *buf, size_t size)
{
	static uint64_t counter;
	static uint8_t rnd[64 * 8];
	static size_t rnd_used = sizeof(rnd);
	static long pid;
	uint64_t r = 0;

	if (pid == 0)
		pid = (long)getpid();
	if (rnd_used == sizeof(rnd)) {
		memset(rnd, 0, sizeof(rnd));
		if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) !=
		    (ssize_t)sizeof(rnd))
			log_warn("getrandom failed; Message-ID uniqueness rests on "
			    "time and pid");
		rnd_used = 0;
	}
	for (size_t i = 0; i < 8; i++)
		r = (r << 8) | rnd[rnd_used + i];
	rnd_used += 8;
	snprintf(buf, size, "%" PRIx64 ".%lx.%" PRIu64 ".%016" PRIx64,
	    (uint64_t)queue_now_ms(), pid, ++counter, r);
}

static void sign_done(void *arg, int status, const char *error,
    const char *const *headers, size_t n_headers);

/* Which domain signs this message: the From domain when it is a
 * configured [domain] with DKIM selectors; "" for none. */
static void
choose_signer(struct txn *t)
{
	const struct cfg_domain *d;

	t->sign_domain[0] = '\0';
	if (t->source == CLEANUP_SOURCE_INBOUND || t->fix.from_domain == NULL)
		return;
	d = config_find_domain(cleanup.d.cfg, t->fix.from_domain);
	if (d == NULL || d->n_dkim == 0)
		return;
	tern_strlcpy(t->sign_domain, d->name, sizeof(t->sign_domain));
}

/* The header section is complete: check and fix it, create the queue
 * message, start signing, write the final header section. */
static void
on_headers(void *arg, struct header_list *h)
{
	struct txn *t = arg;
	struct fixup_env env;
	struct queue_msg_info info;
	char unique[128];

	memset(&env, 0, sizeof(env));
	env.source = t->source;
	env.hostname = cleanup.d.cfg->server.hostname;
	env.helo = t->helo;
	env.client_name = t->client_name;
	env.client_addr = t->client_addr;
	env.tls = t->tls;
	env.auth_user = t->auth_user;
	env.smtputf8 = t->smtputf8;
	env.sender = t->sender;
	env.single_rcpt = t->n_rcpts == 1 ? t->rcpts[0].address : NULL;
	env.now = time(NULL);
	unique_id(unique, sizeof(unique));
	env.unique = unique;

	memset(&info, 0, sizeof(info));
	info.body = t->body;
	info.source = t->source;
	info.ret = t->ret;
	info.smtputf8 = t->smtputf8;
	info.sender = t->sender;
	info.envid = t->envid;
	info.auth_user = t->auth_user;
	info.client_addr = t->client_addr;
	info.client_name = t->client_name;
	info.stream = "";
	fixup_headers(h, &env, &t->fix);
	if (t->fix.code != 0) {
		char label[300];

		log_info("%s: reject: header from %s: %u %s %s; from=<%s>",
		    t->qid_text, client_label(t, label, sizeof(label)),
		    t->fix.code, t->fix.status, t->fix.text, t->sender);
		txn_fail(t, t->fix.code, t->fix.status, t->fix.text);
		t->fail_logged = true;
		return;
	}
	/* The queue id goes into the Received field: the message is
	 * created now that its Message-ID is known. */
	info.message_id = t->fix.message_id;
	info.qid = t->provisional_qid;
	t->qm = queue_msg_new(&info);
	env.queue_id = t->qid_text;
	t->fix.prepend = fixup_received(&env);
	for (size_t i = 0; i < t->n_rcpts; i++) {
		if (queue_msg_add_rcpt(t->qm, t->rcpts[i].address,
		    t->rcpts[i].orcpt, t->rcpts[i].notify) == -1) {
			txn_fail(t, 501, "5.5.4", "Recipient parameters too long");
			return;
		}
		/* The queue message has its own copy now. */
		free(t->rcpts[i].address);
		free(t->rcpts[i].orcpt);
		t->rcpts[i].address = t->rcpts[i].orcpt = NULL;
	}
	choose_signer(t);
	if (t->sign_domain[0] != '\0') {
		if (cleanup.signer == NULL) {
			log_warn("%s: cannot sign for domain %s: the signer is not "
			    "configured; deferring with 451 4.7.0", t->qid_text,
			    t->sign_domain);
			txn_fail(t, 451, "4.7.0", "Message cannot be signed now");
			return;
		}
		t->sign = signer_job_begin(cleanup.signer, t->sign_domain,
		    sign_done, t);
		/* A signer that is down may answer at once. */
		if (t->sign_done)
			t->sign = NULL;
		if (t->fail_code != 0)
			return;
	}
	t->content_open = true;
	/* The header section goes to the signer with the body (sign_send). */
	fixup_write_headers(h, &t->fix, content_add, t);
}

static void
on_body(void *arg, const char *p, size_t n)
{
	struct txn *t = arg;

	if (t->fail_code == 0)
		content_out(t, p, n);
}

/* The first content (or END) ends the envelope. */
static void
txn_start_content(struct txn *t)
{
	struct msg_reader_opts o;

	memset(&o, 0, sizeof(o));
	o.allow_8bit = t->body != CLEANUP_BODY_7BIT || t->smtputf8;
	o.size_limit = cleanup.d.cfg->server.message_size_limit;
	msg_reader_init(&t->reader, &o, on_headers, on_body, t);
	t->state = TXN_DATA;
}

static void
on_data(struct client *cl, struct ipc_msg *m)
{
	const void *p;
	size_t n;
	struct txn *t;

	if (ipc_get_data(m, &p, &n) == -1 || ipc_msg_end(m) == -1 ||
	    n > IPC_DATA_CHUNK) {
		ipc_conn_protocol_error(cl->conn, "malformed CLEANUP_DATA");
		return;
	}
	/* Content for a refused or forgotten transaction is dropped. */
	if ((t = txn_find(cl, m->reqid)) == NULL)
		return;
	if (t->state == TXN_ENVELOPE)
		txn_start_content(t);
	if (t->state != TXN_DATA) {
		ipc_conn_protocol_error(cl->conn, "CLEANUP_DATA after END");
		return;
	}
	if (t->fail_code != 0)
		return;
	msg_reader_feed(&t->reader, p, n);
	if (t->reader.error != MSG_OK) {
		unsigned code;
		const char *status, *text;

		msg_error_reply(t->reader.error, &code, &status, &text);
		txn_fail(t, code, status, text);
	}
}

/* ---- END: sign, commit, answer ---- */

static void
refuse_end(struct txn *t, unsigned code, const char *status, const char *text)
{
	char label[300];

	/* Postfix's word for the end of the data, which pflogsumm counts;
	 * one reject line per message (a header's is written already). */
	if (!t->fail_logged)
		log_info("%s: reject: END-OF-MESSAGE from %s: %u %s %s; "
		    "from=<%s>", *t->qid_text ? t->qid_text : "NOQUEUE",
		    client_label(t, label, sizeof(label)), code, status, text,
		    t->sender);
	reply(t->client, t->reqid, code, status, text, "");
	txn_free(t);
}

static void
on_end(struct client *cl, struct ipc_msg *m)
{
	struct txn *t;

	if (ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(cl->conn, "malformed CLEANUP_END");
		return;
	}
	if ((t = txn_find(cl, m->reqid)) == NULL) {
		reply(cl, m->reqid, 503, "5.5.1", "No transaction", "");
		return;
	}
	if (t->state == TXN_SIGNING || t->state == TXN_COMMITTING) {
		ipc_conn_protocol_error(cl->conn, "CLEANUP_END twice");
		return;
	}
	if (t->state == TXN_ENVELOPE)
		txn_start_content(t);
	if (t->n_rcpts == 0) {
		refuse_end(t, 554, "5.5.1", "No valid recipients");
		return;
	}
	if (t->fail_code == 0) {
		msg_reader_finish(&t->reader);
		if (t->reader.error != MSG_OK) {
			unsigned code;
			const char *status, *text;

			msg_error_reply(t->reader.error, &code, &status, &text);
			txn_fail(t, code, status, text);
		}
	}
	if (t->fail_code != 0) {
		refuse_end(t, t->fail_code, t->fail_status, t->fail_text);
		return;
	}
	/* The header section is no longer needed: its bytes are in content. */
	msg_reader_free(&t->reader);
	cleanup.n_ending++;
	if (t->sign != NULL) {
		struct signer_job *job = t->sign;

		t->state = TXN_SIGNING;
		sign_send(t, true);
		signer_job_end(job);
		return;
	}
	txn_commit(t);
}

/* The signer answered (exactly once per job). */
static void
sign_done(void *arg, int status, const char *error,
    const char *const *headers, size_t n_headers)
{
	struct txn *t = arg;

	t->sign = NULL;
	t->sign_done = true;
	if (status != SIGN_OK) {
		const char *why = error != NULL && *error != '\0' ? error
		    : "no reason given";

		if (status == SIGN_NO_KEY)
			log_warn("%s: cannot sign for domain %s: no usable DKIM key "
			    "(%s); deferring with 451 4.7.0", t->qid_text,
			    t->sign_domain, why);
		else
			log_warn("%s: signing for domain %s failed: %s; deferring "
			    "with 451 4.7.0", t->qid_text, t->sign_domain, why);
		if (t->state == TXN_SIGNING) {
			cleanup.n_ending--;
			refuse_end(t, 451, "4.7.0", status == SIGN_NO_KEY ?
			    "Message cannot be signed: no usable DKIM key" :
			    "Message cannot be signed now, try again later");
			cleanup_maybe_exit();
		} else {
			txn_fail(t, 451, "4.7.0", "Message cannot be signed now, "
			    "try again later");
		}
		return;
	}
	t->sig_headers = xreallocarray(NULL, n_headers ? n_headers : 1,
	    sizeof(*t->sig_headers));
	for (size_t i = 0; i < n_headers; i++)
		t->sig_headers[i] = xstrdup(headers[i]);
	t->n_sig = n_headers;
	if (t->state == TXN_SIGNING)
		txn_commit(t);
}

/* Called on the committer thread: hand the outcome to the event loop. */
static void
commit_cb(void *arg, enum queue_err status, uint64_t qid)
{
	struct txn *t = arg;

	pthread_mutex_lock(&cleanup.done_lock);
	t->commit_status = status;
	t->qid = qid;
	t->done_next = cleanup.done;
	cleanup.done = t;
	pthread_mutex_unlock(&cleanup.done_lock);
	event_active(cleanup.ev_done, EV_READ, 0);
}

/* Puts the signatures before the content and hands the message to the
 * committer. */
static void
txn_commit(struct txn *t)
{
	/* The signatures go before the content, which stays where it is. */
	for (size_t i = 0; i < t->n_sig; i++) {
		size_t n = strlen(t->sig_headers[i]);

		queue_msg_append_head(t->qm, t->sig_headers[i], n);
		if (n < 2 || memcmp(t->sig_headers[i] + n - 2, "\r\n", 2) != 0)
			queue_msg_append_head(t->qm, "\r\n", 2);
	}
	t->content_open = false;
	t->committed_size = queue_msg_size(t->qm);
	t->state = TXN_COMMITTING;
	queue_committer_submit(cleanup.committer, t->qm, commit_cb, t);
	t->qm = NULL;
}

/* Answers one finished commit. */
static void
txn_answer(struct txn *t, bool *queued)
{
	char qid[QUEUE_ID_LEN + 1], text[80];

	if (t->commit_status != QUEUE_OK) {
		unsigned code;
		const char *status;

		queue_err_smtp(t->commit_status, &code, &status);
		log_warn("%s: queue commit failed: %s; answering %u %s",
		    t->qid_text, queue_strerror(t->commit_status), code, status);
		reply(t->client, t->reqid, code, status,
		    code == 452 ? "Insufficient system storage"
		    : "Queue temporarily unavailable", "");
		return;
	}
	queue_id_format(t->qid, qid);
	if (t->qid != t->provisional_qid)
		log_info("%s: queue id changed to %s at commit", t->qid_text, qid);
	if (t->is_local_user) {
		/* Who submitted it, as the kernel said (Postfix's pickup line). */
		log_info("%s: listener=sendmail, %s, from=<%s>", qid, t->auth_user,
		    t->sender);
		if (t->sender_set_by)
			log_info("%s: sender=<%s> set by %s", qid, t->sender,
			    t->auth_user);
	}
	/* Postfix writes <> for a message without one. */
	log_info("%s: message-id=%s", qid, t->fix.message_id != NULL &&
	    t->fix.message_id[0] != '\0' ? t->fix.message_id : "<>");
	log_info("%s: from=<%s>, size=%" PRIu64 ", nrcpt=%zu (queue active)",
	    qid, t->sender, t->committed_size, t->n_rcpts);
	snprintf(text, sizeof(text), "Ok: queued as %s", qid);
	reply(t->client, t->reqid, 250, "2.0.0", text, qid);
	*queued = true;
}

void
txn_commits_done(evutil_socket_t fd, short what, void *arg)
{
	struct txn *list, *next;
	bool queued = false;

	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&cleanup.done_lock);
	list = cleanup.done;
	cleanup.done = NULL;
	pthread_mutex_unlock(&cleanup.done_lock);
	for (struct txn *t = list; t != NULL; t = next) {
		next = t->done_next;
		txn_answer(t, &queued);
		cleanup.n_ending--;
		txn_free(t);
	}
	if (queued) {
		struct ipc_out *o = ipc_out_new(IPC_QMGR_QUEUED, 0);

		ipc_put_i64(o, tern_now());
		(void)ipc_client_send(cleanup.qmgr, o);
	}
	if (queue_is_broken(cleanup.q))
		log_fatal("the queue store is broken (LMDB panic); exiting so "
		    "that the master restarts tern-cleanup");
	cleanup_maybe_exit();
}

/* ---- ABORT and the dispatcher ---- */

/* The client no longer wants an answer. A message being committed is
 * committed all the same (a duplicate if the client retries, never a
 * loss); anything earlier was never acknowledged and is dropped. */
static void
txn_forget(struct txn *t)
{
	if (t->state == TXN_COMMITTING) {
		txn_detach(t);
		return;
	}
	if (t->state == TXN_SIGNING) {
		cleanup.n_ending--;
		txn_free(t);	/* aborts the signing job */
		cleanup_maybe_exit();
		return;
	}
	txn_free(t);
}

static void
on_abort(struct client *cl, struct ipc_msg *m)
{
	struct txn *t;

	if (ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(cl->conn, "malformed CLEANUP_ABORT");
		return;
	}
	if ((t = txn_find(cl, m->reqid)) != NULL)
		txn_forget(t);
}

void
txn_dispatch(struct client *cl, struct ipc_msg *m)
{
	switch (m->type) {
	case IPC_CLEANUP_BEGIN:
		on_begin(cl, m);
		break;
	case IPC_CLEANUP_RCPT:
		on_rcpt(cl, m);
		break;
	case IPC_CLEANUP_DATA:
		on_data(cl, m);
		break;
	case IPC_CLEANUP_END:
		on_end(cl, m);
		break;
	case IPC_CLEANUP_ABORT:
		on_abort(cl, m);
		break;
	default:
		ipc_conn_protocol_error(cl->conn, "unexpected message %s",
		    ipc_type_name(m->type));
	}
}

bool
txn_client_waits_for_us(const struct client *cl)
{
	for (const struct txn *t = cl->txns; t != NULL; t = t->next)
		if (t->state == TXN_SIGNING || t->state == TXN_COMMITTING)
			return true;
	return false;
}

void
txn_client_gone(struct client *cl)
{
	while (cl->txns != NULL)
		txn_forget(cl->txns);
}
