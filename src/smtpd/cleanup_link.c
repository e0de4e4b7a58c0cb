/*
 * cleanup_link.c - tern-smtpd's one connection to tern-cleanup: many
 * transactions at once over it, each named by its reqid (ipc.h,
 * IPC_CLEANUP_*). A session waiting for a reply is found again by reqid;
 * when the connection drops, every transaction in flight fails with 451.
 * Runs in tern-smtpd, unprivileged.
 */
#include "autoconfig.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

#define BUCKETS		4096
/* Bytes queued to cleanup above which sessions stop reading. */
#define FULL_BYTES	(4u * 1024 * 1024)

struct entry {
	uint32_t reqid;
	struct session *s;
	struct entry *next;
};

static struct ipc_client *link_client;
static struct entry *table[BUCKETS];
static uint32_t next_reqid;

static void
table_add(uint32_t reqid, struct session *s)
{
	struct entry *e = xmalloc(sizeof(*e));

	e->reqid = reqid;
	e->s = s;
	e->next = table[reqid % BUCKETS];
	table[reqid % BUCKETS] = e;
}

static struct session *
table_find(uint32_t reqid)
{
	for (struct entry *e = table[reqid % BUCKETS]; e != NULL; e = e->next)
		if (e->reqid == reqid)
			return e->s;
	return NULL;
}

static void
table_remove(uint32_t reqid)
{
	for (struct entry **p = &table[reqid % BUCKETS]; *p != NULL;
	    p = &(*p)->next)
		if ((*p)->reqid == reqid) {
			struct entry *e = *p;

			*p = e->next;
			free(e);
			return;
		}
}

static void
cleanup_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	const char *enhanced, *text, *queue_id;
	struct session *s;
	uint16_t code;

	(void)arg;
	if (m->type != IPC_CLEANUP_REPLY) {
		ipc_conn_protocol_error(c, "unexpected %s from cleanup",
		    ipc_type_name(m->type) ? ipc_type_name(m->type) : "message");
		return;
	}
	if (ipc_get_u16(m, &code) == -1 || ipc_get_str(m, &enhanced) == -1 ||
	    ipc_get_str(m, &text) == -1 || ipc_get_str(m, &queue_id) == -1 ||
	    ipc_msg_end(m) == -1 || code < 200 || code > 599 ||
	    (code >= 300 && code < 400)) {
		ipc_conn_protocol_error(c, "malformed CLEANUP_REPLY");
		return;
	}
	/* Never pass CR/LF from a peer into an SMTP reply. */
	if (strpbrk(text, "\r\n") != NULL || strpbrk(enhanced, "\r\n ") != NULL ||
	    strpbrk(queue_id, "\r\n ") != NULL) {
		ipc_conn_protocol_error(c, "CLEANUP_REPLY with line breaks");
		return;
	}
	s = table_find(m->reqid);
	if (s == NULL)
		return;		/* the session is gone */
	/* END's reply is the last; a refused BEGIN ends the transaction too. */
	if (s->pending == P_END || (s->pending == P_BEGIN && code >= 300))
		table_remove(m->reqid);
	session_cleanup_reply(s, code, *enhanced ? enhanced
	    : (code < 300 ? "2.0.0" : code < 500 ? "4.0.0" : "5.0.0"), text,
	    queue_id);
}

static void
cleanup_state_cb(struct ipc_client *cl, bool up, void *arg)
{
	(void)cl;
	(void)arg;
	if (up) {
		log_info("connected to cleanup");
		return;
	}
	for (size_t i = 0; i < BUCKETS; i++) {
		struct entry *e = table[i];

		table[i] = NULL;
		while (e != NULL) {
			struct entry *next = e->next;

			session_cleanup_lost(e->s);
			free(e);
			e = next;
		}
	}
}

void
cleanup_link_init(struct daemon *d)
{
	char path[PATH_MAX];

	daemon_service_path(d, "cleanup", path, sizeof(path));
	link_client = ipc_client_new(d->base, path, "smtpd", cleanup_msg_cb,
	    cleanup_state_cb, NULL);
}

bool
is_cleanup_up(void)
{
	return link_client != NULL && ipc_client_is_up(link_client);
}

bool
is_cleanup_full(void)
{
	struct ipc_conn *c = link_client ? ipc_client_conn(link_client) : NULL;

	return c != NULL && ipc_conn_pending(c) > FULL_BYTES;
}

static void
send_or_lose(struct session *s, struct ipc_out *o)
{
	if (ipc_client_send(link_client, o) == -1 && s->tx != NULL)
		s->tx->lost = true;
}

uint32_t
cleanup_begin(struct session *s)
{
	struct transaction *tx = s->tx;
	struct ipc_out *o;

	if (++next_reqid == 0)
		next_reqid = 1;
	tx->reqid = next_reqid;
	tx->begun = true;
	table_add(tx->reqid, s);
	o = ipc_out_new(IPC_CLEANUP_BEGIN, tx->reqid);
	ipc_put_u8(o, s->listener->cfg->mode == LISTEN_INBOUND ?
	    CLEANUP_SOURCE_INBOUND : CLEANUP_SOURCE_SUBMISSION);
	ipc_put_str(o, s->listener->cfg->name);
	ipc_put_str(o, "unknown");
	ipc_put_str(o, s->addr);
	ipc_put_str(o, s->helo);
	ipc_put_str(o, s->auth_user ? s->auth_user : "");
	ipc_put_bool(o, s->trusted);
	ipc_put_str(o, s->tls ? s->tls_info : "");
	ipc_put_str(o, tx->mail.sender);
	ipc_put_u8(o, tx->mail.body);
	ipc_put_bool(o, tx->mail.smtputf8);
	ipc_put_u64(o, tx->mail.size);
	ipc_put_u8(o, tx->mail.ret);
	ipc_put_str(o, tx->mail.envid);
	send_or_lose(s, o);
	if (tx->lost) {
		table_remove(tx->reqid);
		tx->begun = false;
		session_cleanup_lost(s);
	}
	return tx->reqid;
}

void
cleanup_rcpt(struct session *s, const struct smtp_rcpt *r)
{
	struct ipc_out *o = ipc_out_new(IPC_CLEANUP_RCPT, s->tx->reqid);

	ipc_put_str(o, r->address);
	ipc_put_str(o, r->orcpt);
	ipc_put_u8(o, r->notify);
	send_or_lose(s, o);
	if (s->tx->lost)
		session_cleanup_lost(s);
}

void
cleanup_data(struct session *s, const void *p, size_t n)
{
	struct ipc_out *o = ipc_out_new(IPC_CLEANUP_DATA, s->tx->reqid);

	ipc_put_data(o, p, n);
	send_or_lose(s, o);
}

void
cleanup_end(struct session *s)
{
	send_or_lose(s, ipc_out_new(IPC_CLEANUP_END, s->tx->reqid));
	if (s->tx->lost)
		session_cleanup_lost(s);
}

void
cleanup_abort(struct session *s)
{
	table_remove(s->tx->reqid);
	if (is_cleanup_up())
		ipc_client_send(link_client,
		    ipc_out_new(IPC_CLEANUP_ABORT, s->tx->reqid));
}
