/*
 * control.c - ternctl's changes to the queue, taken on qmgr's socket
 * (IPC_CTL_*): flush, delete, hold, release, suppression add and remove.
 * They go through qmgr, not straight to the store, so the active set
 * stays consistent: jobs of a held or deleted message that were not sent
 * yet are dropped (a hold gives their recipients back to the store). The
 * reply is sent after the commit. Read-only commands (listing, events,
 * trace) read the store directly and never come here.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmgr.h"
#include "util.h"

struct ctl_req {
	struct conn *conn;
	uint32_t reqid;
	uint16_t type;
	uint64_t qid;
	char *what;			/* for the log and the reply */
};

static void
ctl_reply(struct conn *c, uint32_t reqid, enum ctl_status status,
    uint64_t count, const char *text)
{
	struct ipc_out *o;

	if (c->closed)
		return;
	o = ipc_out_new(IPC_CTL_REPLY, reqid);
	ipc_put_u8(o, (uint8_t)status);
	ipc_put_u64(o, count);
	ipc_put_str(o, text);
	ipc_conn_send(c->ipc, o);
}

static enum ctl_status
status_of(enum queue_err e)
{
	switch (e) {
	case QUEUE_OK: return CTL_OK;
	case QUEUE_ERR_NOTFOUND: return CTL_NOTFOUND;
	case QUEUE_ERR_STATE:
	case QUEUE_ERR_INVALID: return CTL_INVALID;
	default: return CTL_FAILED;
	}
}

static void
req_done(void *arg, enum queue_err e, bool removed)
{
	struct ctl_req *r = arg;
	enum ctl_status st = status_of(e);
	char *text;

	(void)removed;
	if (st == CTL_OK) {
		text = xasprintf("%s: done", r->what);
		log_info("%s (ternctl)", r->what);
		/* Jobs of the message not yet sent must not go out now. */
		if (r->type == IPC_CTL_DELETE || r->type == IPC_CTL_HOLD)
			dest_drop_qid(r->qid, r->type == IPC_CTL_HOLD);
		if (r->type == IPC_CTL_RELEASE) {
			qmgr.claim_wanted = true;
			sched_request_claim();
		}
	} else {
		text = xasprintf("%s: %s", r->what, st == CTL_NOTFOUND ?
		    "not found" : queue_strerror(e));
	}
	ctl_reply(r->conn, r->reqid, st, st == CTL_OK ? 1 : 0, text);
	free(text);
	conn_unref(r->conn);
	free(r->what);
	free(r);
}

static void
flush_done(void *arg, int rc, enum queue_err e, size_t n)
{
	struct ctl_req *r = arg;
	char *text;

	if (rc == -2) {
		text = xstrdup("a flush is already under way; try again");
		ctl_reply(r->conn, r->reqid, CTL_FAILED, 0, text);
	} else if (rc == -1) {
		text = xasprintf("%s: %s", r->what, queue_strerror(e));
		ctl_reply(r->conn, r->reqid, status_of(e), 0, text);
	} else {
		text = xasprintf("%s: %zu recipient(s) due now", r->what, n);
		log_info("%s (ternctl)", text);
		ctl_reply(r->conn, r->reqid, CTL_OK, n, text);
		qmgr.claim_wanted = true;
		sched_request_claim();
	}
	free(text);
	conn_unref(r->conn);
	free(r->what);
	free(r);
}

static struct ctl_req *
req_new(struct conn *c, struct ipc_msg *m, uint64_t qid, char *what)
{
	struct ctl_req *r = xcalloc(1, sizeof(*r));

	r->conn = c;
	c->refs++;
	r->reqid = m->reqid;
	r->type = m->type;
	r->qid = qid;
	r->what = what;
	return r;
}

static int
get_qid(struct conn *c, struct ipc_msg *m, bool empty_ok, uint64_t *qid)
{
	const char *s;

	*qid = 0;
	if (ipc_get_str(m, &s) == -1 || ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(c->ipc, "malformed %s",
		    ipc_type_name(m->type));
		return -1;
	}
	if (empty_ok && s[0] == '\0')
		return 0;
	if (queue_id_parse(s, qid) == -1) {
		char *text = xasprintf("bad queue id '%s'", s);

		ctl_reply(c, m->reqid, CTL_INVALID, 0, text);
		free(text);
		return -1;
	}
	return 0;
}

void
control_on_msg(struct conn *c, struct ipc_msg *m)
{
	struct queue_update *u;
	struct queue_suppression s;
	const char *address, *reason;
	uint64_t qid;
	int64_t expires;
	char id[QUEUE_ID_LEN + 1];

	switch (m->type) {
	case IPC_CTL_FLUSH:
		if (get_qid(c, m, true, &qid) == -1)
			return;
		queue_id_format(qid, id);
		store_want_flush(qid, flush_done, req_new(c, m, qid, qid == 0 ?
		    xstrdup("flush") : xasprintf("%s: flush", id)));
		store_kick();
		return;
	case IPC_CTL_DELETE:
	case IPC_CTL_HOLD:
	case IPC_CTL_RELEASE:
		if (get_qid(c, m, false, &qid) == -1)
			return;
		queue_id_format(qid, id);
		u = store_group();
		if (m->type == IPC_CTL_DELETE)
			queue_update_delete(u, qid);
		else if (m->type == IPC_CTL_HOLD)
			queue_update_hold(u, qid);
		else
			queue_update_release(u, qid);
		store_track(qid, req_done, req_new(c, m, qid, xasprintf("%s: %s",
		    id, m->type == IPC_CTL_DELETE ? "deleted" :
		    m->type == IPC_CTL_HOLD ? "held" : "released")));
		store_kick();
		return;
	case IPC_CTL_SUPPRESS_ADD:
		if (ipc_get_str(m, &address) == -1 || ipc_get_str(m, &reason) == -1 ||
		    ipc_get_i64(m, &expires) == -1 || ipc_msg_end(m) == -1) {
			ipc_conn_protocol_error(c->ipc, "malformed CTL_SUPPRESS_ADD");
			return;
		}
		if (address[0] == '\0' || strlen(address) > QUEUE_ADDRESS_MAX ||
		    strlen(reason) > QUEUE_FIELD_MAX) {
			ctl_reply(c, m->reqid, CTL_INVALID, 0,
			    "address empty or too long");
			return;
		}
		memset(&s, 0, sizeof(s));
		s.address = address;
		s.source = QUEUE_SUPP_MANUAL;
		s.reason = reason[0] ? reason : "added by the operator";
		s.created_ms = queue_now_ms();
		s.expires_ms = expires;
		queue_update_suppress_add(store_group(), &s);
		store_track(0, req_done, req_new(c, m, 0,
		    xasprintf("suppression of <%s> added", address)));
		store_kick();
		return;
	case IPC_CTL_SUPPRESS_REMOVE:
		if (ipc_get_str(m, &address) == -1 || ipc_msg_end(m) == -1) {
			ipc_conn_protocol_error(c->ipc, "malformed CTL_SUPPRESS_REMOVE");
			return;
		}
		queue_update_suppress_remove(store_group(), address);
		store_track(0, req_done, req_new(c, m, 0,
		    xasprintf("suppression of <%s> removed", address)));
		store_kick();
		return;
	default:
		ipc_conn_protocol_error(c->ipc, "unexpected %s on the control "
		    "connection", ipc_type_name(m->type));
	}
}
