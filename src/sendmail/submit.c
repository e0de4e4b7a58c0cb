/*
 * submit.c - blocking client of the cleanup submission protocol (see
 * submit.h). Used by sendmail (the invoking user) and tern-pickup.
 */
#include "autoconfig.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "peer_proof.h"
#include "log.h"
#include "maildrop.h"
#include "submit.h"
#include "util.h"

struct submit_conn {
	int fd;
	int timeout_ms;
	uint32_t next_reqid;
	uint8_t *frame;			/* the last frame read */
	size_t frame_cap;
	int proof_fd;			/* goes with the next frame, or -1 */
};

/* Waits until fd is ready for events; -1 on timeout or error. */
static int
submit_wait(struct submit_conn *c, short events)
{
	struct pollfd p = { .fd = c->fd, .events = events };
	int rc;

	do {
		rc = poll(&p, 1, c->timeout_ms);
	} while (rc == -1 && errno == EINTR);
	if (rc == 0)
		errno = ETIMEDOUT;
	return rc == 1 ? 0 : -1;
}

static int
submit_send(struct submit_conn *c, struct ipc_out *o)
{
	size_t len, off = 0;
	const uint8_t *p;

	if (c->proof_fd != -1) {
		ssize_t w;
		int fd = c->proof_fd;

		ipc_out_set_fd(o, fd);	/* closed by ipc_out_free */
		c->proof_fd = -1;
		p = ipc_out_bytes(o, &len);
		while ((w = peer_proof_sendmsg(c->fd, p, len, fd)) == -1 &&
		    errno == EAGAIN && submit_wait(c, POLLOUT) == 0)
			;
		if (w <= 0) {
			ipc_out_free(o);
			return -1;
		}
		off = (size_t)w;
	}
	p = ipc_out_bytes(o, &len);
	while (off < len) {
		ssize_t w = write(c->fd, p + off, len - off);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && submit_wait(c, POLLOUT) == 0)
				continue;
			ipc_out_free(o);
			return -1;
		}
		off += (size_t)w;
	}
	ipc_out_free(o);
	return 0;
}

static int
submit_read_exact(struct submit_conn *c, uint8_t *buf, size_t n)
{
	size_t off = 0;

	while (off < n) {
		ssize_t r = read(c->fd, buf + off, n - off);

		if (r == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (r == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && submit_wait(c, POLLIN) == 0)
				continue;
			return -1;
		}
		off += (size_t)r;
	}
	return 0;
}

/* Reads one frame into m (payload valid until the next read). */
static int
submit_read(struct submit_conn *c, struct ipc_msg *m)
{
	uint8_t hbuf[IPC_HEADER_SIZE];
	struct ipc_header h;
	const char *why;

	if (submit_read_exact(c, hbuf, sizeof(hbuf)) == -1)
		return -1;
	if (ipc_header_decode(hbuf, sizeof(hbuf), &h, &why) != 1 ||
	    (h.flags & IPC_F_FD)) {
		errno = EPROTO;
		return -1;
	}
	if (h.length > c->frame_cap) {
		c->frame = xrealloc(c->frame, h.length);
		c->frame_cap = h.length;
	}
	if (h.length > 0 && submit_read_exact(c, c->frame, h.length) == -1)
		return -1;
	memset(m, 0, sizeof(*m));
	m->type = h.type;
	m->flags = h.flags;
	m->reqid = h.reqid;
	m->data = c->frame;
	m->len = h.length;
	m->fd = -1;
	return 0;
}

struct submit_conn *
submit_connect(const char *path, const char *name, int timeout_ms)
{
	struct submit_conn *c;
	struct ipc_msg m;
	struct ipc_out *o;
	uint32_t version;
	const char *peer;
	int fd, saved;

	fd = ipc_connect_unix(path);
	if (fd == -1)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->proof_fd = -1;
	/* A daemon that accepts answers HELLO at once: a long wait means
	 * nobody accepts (ternd holds the socket, the daemon is down). */
	c->timeout_ms = timeout_ms < SUBMIT_HELLO_TIMEOUT_MS ? timeout_ms
	    : SUBMIT_HELLO_TIMEOUT_MS;
	c->next_reqid = 1;
	/* ipc_connect_unix is non-blocking: wait for the connection. */
	if (submit_wait(c, POLLOUT) == -1)
		goto fail;
	o = ipc_out_new(IPC_HELLO, 0);
	ipc_put_u32(o, IPC_VERSION);
	ipc_put_str(o, name);
	if (submit_send(c, o) == -1)
		goto fail;
	if (submit_wait(c, POLLIN) == -1 || submit_read(c, &m) == -1)
		goto fail;
	if (m.type != IPC_HELLO || ipc_get_u32(&m, &version) == -1 ||
	    ipc_get_str(&m, &peer) == -1 || ipc_msg_end(&m) == -1 ||
	    version != IPC_VERSION) {
		errno = EPROTO;
		goto fail;
	}
	c->timeout_ms = timeout_ms;
	return c;
fail:
	saved = errno;
	submit_close(c);
	errno = saved;
	return NULL;
}

void
submit_close(struct submit_conn *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	if (c->proof_fd != -1)
		close(c->proof_fd);
	free(c->frame);
	free(c);
}

void
submit_set_proof(struct submit_conn *c, int fd)
{
	if (c->proof_fd != -1)
		close(c->proof_fd);
	c->proof_fd = fd;
}

/* Waits for the CLEANUP_REPLY to reqid; -1 when the connection failed. */
static int
submit_reply_wait(struct submit_conn *c, uint32_t reqid, struct submit_reply *r)
{
	struct ipc_msg m;
	const char *status, *text, *qid;
	uint16_t code;

	memset(r, 0, sizeof(*r));
	for (;;) {
		if (submit_wait(c, POLLIN) == -1 || submit_read(c, &m) == -1)
			return -1;
		if (m.type != IPC_CLEANUP_REPLY || m.reqid != reqid)
			continue;	/* not ours: nothing else is expected */
		if (ipc_get_u16(&m, &code) == -1 ||
		    ipc_get_str(&m, &status) == -1 ||
		    ipc_get_str(&m, &text) == -1 ||
		    ipc_get_str(&m, &qid) == -1 || ipc_msg_end(&m) == -1 ||
		    code < 200 || code > 599) {
			errno = EPROTO;
			return -1;
		}
		r->code = code;
		tern_strlcpy(r->status, status, sizeof(r->status));
		tern_strlcpy(r->text, text, sizeof(r->text));
		tern_strlcpy(r->qid, qid, sizeof(r->qid));
		return 0;
	}
}

static enum submit_outcome
outcome_of(unsigned code)
{
	if (code >= 200 && code < 300)
		return SUBMIT_COMMITTED;
	if (code >= 500)
		return SUBMIT_REFUSED;
	return SUBMIT_TEMPFAIL;
}

int
submit_begin(struct submit_conn *c, uint8_t source, const char *auth_user,
    const struct maildrop_msg *m, uint32_t *reqid, struct submit_reply *r)
{
	struct ipc_out *o;

	*reqid = c->next_reqid++;
	o = ipc_out_new(IPC_CLEANUP_BEGIN, *reqid);
	ipc_put_u8(o, source);
	ipc_put_str(o, "");		/* listener */
	ipc_put_str(o, "localhost");	/* client hostname */
	ipc_put_str(o, "");		/* client address: local */
	ipc_put_str(o, "");		/* helo */
	ipc_put_str(o, auth_user);
	ipc_put_bool(o, false);		/* trusted network */
	ipc_put_str(o, "");		/* tls */
	ipc_put_str(o, m->sender);
	ipc_put_u8(o, m->body);
	ipc_put_bool(o, m->smtputf8);
	ipc_put_u64(o, m->content_len);
	ipc_put_u8(o, m->ret);
	ipc_put_str(o, m->envid ? m->envid : "");
	if (submit_send(c, o) == -1 || submit_reply_wait(c, *reqid, r) == -1)
		return -1;
	return 0;
}

int
submit_rcpt(struct submit_conn *c, uint32_t reqid, const char *address,
    uint8_t notify, struct submit_reply *r)
{
	struct ipc_out *o = ipc_out_new(IPC_CLEANUP_RCPT, reqid);

	ipc_put_str(o, address);
	ipc_put_str(o, "");
	ipc_put_u8(o, notify);
	if (submit_send(c, o) == -1 || submit_reply_wait(c, reqid, r) == -1)
		return -1;
	return 0;
}

int
submit_content(struct submit_conn *c, uint32_t reqid, const char *data,
    size_t len, struct submit_reply *r)
{
	struct ipc_out *o;

	for (size_t off = 0; off < len; off += IPC_DATA_CHUNK) {
		size_t n = len - off;

		if (n > IPC_DATA_CHUNK)
			n = IPC_DATA_CHUNK;
		o = ipc_out_new(IPC_CLEANUP_DATA, reqid);
		ipc_put_data(o, data + off, n);
		if (submit_send(c, o) == -1)
			return -1;
	}
	o = ipc_out_new(IPC_CLEANUP_END, reqid);
	if (submit_send(c, o) == -1 || submit_reply_wait(c, reqid, r) == -1)
		return -1;
	return 0;
}

void
submit_abort(struct submit_conn *c, uint32_t reqid)
{
	submit_send(c, ipc_out_new(IPC_CLEANUP_ABORT, reqid));
}

enum submit_outcome
submit_outcome_of(unsigned code)
{
	return outcome_of(code);
}

enum submit_outcome
submit_message(struct submit_conn *c, uint8_t source, const char *auth_user,
    const struct maildrop_msg *m, struct submit_result *res)
{
	enum submit_outcome oc;
	uint32_t reqid;

	memset(res, 0, sizeof(*res));
	res->rcpt = xcalloc(m->n_rcpts ? m->n_rcpts : 1, sizeof(*res->rcpt));
	res->n_rcpt = m->n_rcpts;

	if (submit_begin(c, source, auth_user, m, &reqid, &res->begin) == -1)
		goto lost;
	oc = outcome_of(res->begin.code);
	if (oc != SUBMIT_COMMITTED)
		return oc;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		if (submit_rcpt(c, reqid, m->rcpts[i], m->notify, &res->rcpt[i]) == -1)
			goto lost;
		oc = outcome_of(res->rcpt[i].code);
		if (oc == SUBMIT_COMMITTED)
			res->n_accepted++;
		else if (oc == SUBMIT_TEMPFAIL) {
			/* One recipient cannot be taken now: the whole message
			 * waits, so nobody gets it twice. */
			submit_abort(c, reqid);
			return SUBMIT_TEMPFAIL;
		}
	}
	if (res->n_accepted == 0) {
		submit_abort(c, reqid);
		return SUBMIT_REFUSED;
	}
	if (submit_content(c, reqid, m->content, m->content_len, &res->end) == -1)
		goto lost;
	return outcome_of(res->end.code);
lost:
	res->lost = true;
	return SUBMIT_LOST;
}

void
submit_result_free(struct submit_result *res)
{
	free(res->rcpt);
	memset(res, 0, sizeof(*res));
}
