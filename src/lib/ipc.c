/*
 * ipc.c - framing, field encoding and libevent-driven connections for the
 * Unix-socket conversations between tern daemons (see ipc.h for the wire
 * format). Linked into every daemon; needs no privilege.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "peer_proof.h"
#include "util.h"

#define IPC_MAX_FDS_QUEUED	16	/* received but not yet claimed */

const char *
ipc_type_name(uint16_t type)
{
	switch ((enum ipc_type)type) {
	case IPC_HELLO: return "HELLO";
	case IPC_CLEANUP_BEGIN: return "CLEANUP_BEGIN";
	case IPC_CLEANUP_RCPT: return "CLEANUP_RCPT";
	case IPC_CLEANUP_DATA: return "CLEANUP_DATA";
	case IPC_CLEANUP_END: return "CLEANUP_END";
	case IPC_CLEANUP_ABORT: return "CLEANUP_ABORT";
	case IPC_CLEANUP_REPLY: return "CLEANUP_REPLY";
	case IPC_SIGN_BEGIN: return "SIGN_BEGIN";
	case IPC_SIGN_DATA: return "SIGN_DATA";
	case IPC_SIGN_END: return "SIGN_END";
	case IPC_SIGN_ABORT: return "SIGN_ABORT";
	case IPC_SIGN_REPLY: return "SIGN_REPLY";
	case IPC_QMGR_QUEUED: return "QMGR_QUEUED";
	case IPC_DELIVERY_READY: return "DELIVERY_READY";
	case IPC_DELIVERY_JOB: return "DELIVERY_JOB";
	case IPC_DELIVERY_RESULT: return "DELIVERY_RESULT";
	case IPC_BOUNCE_READY: return "BOUNCE_READY";
	case IPC_BOUNCE_WORK: return "BOUNCE_WORK";
	case IPC_BOUNCE_DONE: return "BOUNCE_DONE";
	case IPC_BOUNCE_FEEDBACK: return "BOUNCE_FEEDBACK";
	case IPC_BOUNCE_FEEDBACK_DONE: return "BOUNCE_FEEDBACK_DONE";
	case IPC_CTL_FLUSH: return "CTL_FLUSH";
	case IPC_CTL_DELETE: return "CTL_DELETE";
	case IPC_CTL_HOLD: return "CTL_HOLD";
	case IPC_CTL_RELEASE: return "CTL_RELEASE";
	case IPC_CTL_SUPPRESS_ADD: return "CTL_SUPPRESS_ADD";
	case IPC_CTL_SUPPRESS_REMOVE: return "CTL_SUPPRESS_REMOVE";
	case IPC_CTL_REPLY: return "CTL_REPLY";
	}
	return NULL;
}

const char *
delivery_stage_name(uint8_t stage)
{
	static const char *const names[] = {
		[DELIVERY_STAGE_NONE] = "none",
		[DELIVERY_STAGE_CONNECT] = "connect",
		[DELIVERY_STAGE_HELO] = "helo",
		[DELIVERY_STAGE_STARTTLS] = "starttls",
		[DELIVERY_STAGE_MAIL] = "mail",
		[DELIVERY_STAGE_RCPT] = "rcpt",
		[DELIVERY_STAGE_DATA] = "data",
		[DELIVERY_STAGE_DOT] = "dot",
	};

	return stage <= DELIVERY_STAGE_MAX ? names[stage] : NULL;
}

/* ---- frames ---- */

static uint16_t
load_u16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
load_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | p[3];
}

static void
store_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
store_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int
ipc_header_decode(const uint8_t *buf, size_t len, struct ipc_header *hdr,
    const char **why)
{
	if (len < IPC_HEADER_SIZE)
		return 0;
	hdr->length = load_u32(buf);
	hdr->type = load_u16(buf + 4);
	hdr->flags = load_u16(buf + 6);
	hdr->reqid = load_u32(buf + 8);
	if (hdr->length > IPC_MAX_PAYLOAD) {
		*why = "frame longer than the maximum";
		return -1;
	}
	if ((hdr->flags & ~IPC_F_FD) != 0) {
		*why = "unknown frame flags";
		return -1;
	}
	if (ipc_type_name(hdr->type) == NULL) {
		*why = "unknown message type";
		return -1;
	}
	return 1;
}

/* ---- reading fields ---- */

static int
get_bytes(struct ipc_msg *m, void *dst, size_t n)
{
	if (m->len - m->pos < n)
		return -1;
	memcpy(dst, m->data + m->pos, n);
	m->pos += n;
	return 0;
}

int
ipc_get_u8(struct ipc_msg *m, uint8_t *v)
{
	return get_bytes(m, v, 1);
}

int
ipc_get_u16(struct ipc_msg *m, uint16_t *v)
{
	uint8_t b[2];

	if (get_bytes(m, b, 2) == -1)
		return -1;
	*v = load_u16(b);
	return 0;
}

int
ipc_get_u32(struct ipc_msg *m, uint32_t *v)
{
	uint8_t b[4];

	if (get_bytes(m, b, 4) == -1)
		return -1;
	*v = load_u32(b);
	return 0;
}

int
ipc_get_u64(struct ipc_msg *m, uint64_t *v)
{
	uint32_t hi, lo;

	if (ipc_get_u32(m, &hi) == -1 || ipc_get_u32(m, &lo) == -1)
		return -1;
	*v = ((uint64_t)hi << 32) | lo;
	return 0;
}

int
ipc_get_i64(struct ipc_msg *m, int64_t *v)
{
	uint64_t u;

	if (ipc_get_u64(m, &u) == -1)
		return -1;
	memcpy(v, &u, sizeof(*v));
	return 0;
}

int
ipc_get_bool(struct ipc_msg *m, bool *v)
{
	uint8_t b;

	if (m->pos >= m->len || m->data[m->pos] > 1)
		return -1;
	(void)ipc_get_u8(m, &b);
	*v = b == 1;
	return 0;
}

int
ipc_get_data(struct ipc_msg *m, const void **p, size_t *len)
{
	uint32_t n;
	size_t start = m->pos;

	if (ipc_get_u32(m, &n) == -1)
		return -1;
	if (m->len - m->pos < n) {
		m->pos = start;
		return -1;
	}
	*p = m->data + m->pos;
	*len = n;
	m->pos += n;
	return 0;
}

int
ipc_get_str(struct ipc_msg *m, const char **s)
{
	const void *p;
	size_t n, start = m->pos;

	if (ipc_get_data(m, &p, &n) == -1)
		return -1;
	/* Exactly one NUL, at the end: a C string without a copy. */
	if (n == 0 || ((const char *)p)[n - 1] != '\0' ||
	    memchr(p, '\0', n - 1) != NULL) {
		m->pos = start;
		return -1;
	}
	*s = p;
	return 0;
}

int
ipc_msg_end(const struct ipc_msg *m)
{
	return m->pos == m->len ? 0 : -1;
}

/* ---- building frames ---- */

struct ipc_out {
	uint8_t *buf;
	size_t len, cap;
	int fd;
};

static void
out_reserve(struct ipc_out *o, size_t n)
{
	if (o->len + n <= o->cap)
		return;
	while (o->cap < o->len + n)
		o->cap *= 2;
	o->buf = xrealloc(o->buf, o->cap);
}

static void
out_append(struct ipc_out *o, const void *p, size_t n)
{
	out_reserve(o, n);
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

struct ipc_out *
ipc_out_new(uint16_t type, uint32_t reqid)
{
	struct ipc_out *o = xcalloc(1, sizeof(*o));

	o->cap = 256;
	o->buf = xmalloc(o->cap);
	o->len = IPC_HEADER_SIZE;
	o->fd = -1;
	store_u32(o->buf, 0);
	store_u16(o->buf + 4, type);
	store_u16(o->buf + 6, 0);
	store_u32(o->buf + 8, reqid);
	return o;
}

void
ipc_put_u8(struct ipc_out *o, uint8_t v)
{
	out_append(o, &v, 1);
}

void
ipc_put_u16(struct ipc_out *o, uint16_t v)
{
	uint8_t b[2];

	store_u16(b, v);
	out_append(o, b, 2);
}

void
ipc_put_u32(struct ipc_out *o, uint32_t v)
{
	uint8_t b[4];

	store_u32(b, v);
	out_append(o, b, 4);
}

void
ipc_put_u64(struct ipc_out *o, uint64_t v)
{
	ipc_put_u32(o, (uint32_t)(v >> 32));
	ipc_put_u32(o, (uint32_t)v);
}

void
ipc_put_i64(struct ipc_out *o, int64_t v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	ipc_put_u64(o, u);
}

void
ipc_put_bool(struct ipc_out *o, bool v)
{
	ipc_put_u8(o, v ? 1 : 0);
}

void
ipc_put_data(struct ipc_out *o, const void *p, size_t len)
{
	TERN_ASSERT(len <= IPC_MAX_PAYLOAD);
	ipc_put_u32(o, (uint32_t)len);
	if (len > 0)
		out_append(o, p, len);
}

void
ipc_put_str(struct ipc_out *o, const char *s)
{
	if (s == NULL)
		s = "";
	ipc_put_data(o, s, strlen(s) + 1);
}

void
ipc_out_set_fd(struct ipc_out *o, int fd)
{
	TERN_ASSERT(o->fd == -1);
	o->fd = fd;
	store_u16(o->buf + 6, IPC_F_FD);
}

void
ipc_out_free(struct ipc_out *o)
{
	if (o == NULL)
		return;
	if (o->fd != -1)
		close(o->fd);
	free(o->buf);
	free(o);
}

const uint8_t *
ipc_out_bytes(struct ipc_out *o, size_t *len)
{
	/* A frame that outgrew the limit is a bug in the sender. */
	TERN_ASSERT(o->len - IPC_HEADER_SIZE <= IPC_MAX_PAYLOAD);
	store_u32(o->buf, (uint32_t)(o->len - IPC_HEADER_SIZE));
	*len = o->len;
	return o->buf;
}

/* ---- connections ---- */

/* A descriptor to send once the stream reaches a given byte. */
struct fd_mark {
	uint64_t offset;		/* absolute stream offset of the frame */
	int fd;
};

struct ipc_conn {
	struct event_base *base;
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_close;		/* reports the close from the loop */
	int fd;
	char name[32];
	char peer[32];
	bool peer_hello;
	struct evbuffer *in;
	struct evbuffer *out;
	uint64_t out_written;		/* bytes written so far */
	uint64_t out_queued;		/* bytes queued so far */
	struct fd_mark *marks;		/* descriptors to send, in order */
	size_t n_marks;
	int in_fds[IPC_MAX_FDS_QUEUED];	/* descriptors received, in order */
	size_t n_in_fds;
	ipc_msg_cb on_msg;
	ipc_close_cb on_close;
	void *arg;
	int dispatching;		/* inside on_msg */
	bool dead;			/* closed; on_close pending or done */
	bool freed_in_dispatch;
	char *close_why;
};

static void ipc_conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void ipc_conn_write_cb(evutil_socket_t fd, short what, void *arg);

/*
 * Marks the connection closed. on_close runs later from the event loop,
 * never inside an ipc_* call, so callers may go on using c until then.
 */
static void
ipc_conn_close(struct ipc_conn *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = true;
	event_del(c->ev_read);
	event_del(c->ev_write);
	c->close_why = xstrdup(why);
	event_active(c->ev_close, 0, 0);
}

static void
ipc_conn_closed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_conn *c = arg;

	(void)fd;
	(void)what;
	c->on_close(c, c->close_why, c->arg);
}

struct ipc_conn *
ipc_conn_new(struct event_base *base, int fd, const char *name,
    ipc_msg_cb on_msg, ipc_close_cb on_close, void *arg)
{
	struct ipc_conn *c = xcalloc(1, sizeof(*c));
	struct ipc_out *hello;

	c->base = base;
	c->fd = fd;
	tern_strlcpy(c->name, name, sizeof(c->name));
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	if (c->in == NULL || c->out == NULL)
		log_fatal("evbuffer_new failed");
	c->on_msg = on_msg;
	c->on_close = on_close;
	c->arg = arg;
	fd_set_nonblock(fd);
	c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, ipc_conn_read_cb, c);
	c->ev_write = event_new(base, fd, EV_WRITE, ipc_conn_write_cb, c);
	c->ev_close = event_new(base, -1, 0, ipc_conn_closed_cb, c);
	if (c->ev_read == NULL || c->ev_write == NULL || c->ev_close == NULL)
		log_fatal("event_new failed");
	event_add(c->ev_read, NULL);

	hello = ipc_out_new(IPC_HELLO, 0);
	ipc_put_u32(hello, IPC_VERSION);
	ipc_put_str(hello, c->name);
	ipc_conn_send(c, hello);
	return c;
}

void
ipc_conn_free(struct ipc_conn *c)
{
	if (c == NULL)
		return;
	if (c->dispatching > 0) {
		/* Freed from inside on_msg: finish once the loop unwinds. */
		c->freed_in_dispatch = true;
		c->dead = true;
		event_del(c->ev_read);
		event_del(c->ev_write);
		return;
	}
	event_free(c->ev_read);
	event_free(c->ev_write);
	event_free(c->ev_close);
	evbuffer_free(c->in);
	evbuffer_free(c->out);
	for (size_t i = 0; i < c->n_marks; i++)
		close(c->marks[i].fd);
	free(c->marks);
	for (size_t i = 0; i < c->n_in_fds; i++)
		close(c->in_fds[i]);
	if (c->fd != -1)
		close(c->fd);
	free(c->close_why);
	free(c);
}

void
ipc_conn_protocol_error(struct ipc_conn *c, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn("ipc: protocol error from %s: %s",
	    c->peer[0] ? c->peer : "peer", why);
	ipc_conn_close(c, why);
}

size_t
ipc_conn_pending(const struct ipc_conn *c)
{
	return evbuffer_get_length(c->out);
}

void
ipc_conn_set_reading(struct ipc_conn *c, bool on)
{
	if (c->dead)
		return;
	if (on)
		event_add(c->ev_read, NULL);
	else
		event_del(c->ev_read);
}

const char *
ipc_conn_peer_name(const struct ipc_conn *c)
{
	return c->peer;
}

int
ipc_conn_fd(const struct ipc_conn *c)
{
	return c->fd;
}

void
ipc_conn_set_arg(struct ipc_conn *c, void *arg)
{
	c->arg = arg;
}

int
ipc_conn_peer_cred(const struct ipc_conn *c, pid_t *pid, uid_t *uid, gid_t *gid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return -1;
	if (pid != NULL)
		*pid = cred.pid;
	if (uid != NULL)
		*uid = cred.uid;
	if (gid != NULL)
		*gid = cred.gid;
	return 0;
}

/* Writes as much as the socket takes; descriptors go with their frame. */
static int
ipc_conn_flush(struct ipc_conn *c)
{
	while (evbuffer_get_length(c->out) > 0) {
		struct iovec iov[16];
		struct msghdr mh;
		union peer_proof_control ctl;
		size_t limit = evbuffer_get_length(c->out);
		int n, nvec;
		ssize_t w;
		bool send_fd = false;

		if (c->n_marks > 0) {
			uint64_t at = c->marks[0].offset;

			if (at == c->out_written)
				send_fd = true;
			else if (at - c->out_written < limit)
				limit = (size_t)(at - c->out_written);
		}
		n = evbuffer_peek(c->out, (ev_ssize_t)limit, NULL,
		    (struct evbuffer_iovec *)iov, 16);
		nvec = n > 16 ? 16 : n;
		/* evbuffer_iovec matches struct iovec on POSIX systems. */
		if (nvec > 0) {
			size_t total = 0;
			int k;

			for (k = 0; k < nvec; k++) {
				if (total + iov[k].iov_len > limit) {
					iov[k].iov_len = limit - total;
					k++;
					break;
				}
				total += iov[k].iov_len;
			}
			nvec = k;
		}
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)nvec;
		if (send_fd)
			peer_proof_attach(&mh, &ctl, c->marks[0].fd);
		w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(c->ev_write, NULL);
				return 0;
			}
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (send_fd) {
			close(c->marks[0].fd);
			memmove(c->marks, c->marks + 1,
			    (c->n_marks - 1) * sizeof(*c->marks));
			c->n_marks--;
		}
		evbuffer_drain(c->out, (size_t)w);
		c->out_written += (uint64_t)w;
	}
	return 0;
}

/* Appends the frame to the output buffer; false when c is dead. */
static bool
ipc_conn_queue(struct ipc_conn *c, struct ipc_out *o)
{
	const uint8_t *bytes;
	size_t len;

	if (c->dead) {
		ipc_out_free(o);
		return false;
	}
	bytes = ipc_out_bytes(o, &len);
	if (o->fd != -1) {
		c->marks = xreallocarray(c->marks, c->n_marks + 1, sizeof(*c->marks));
		c->marks[c->n_marks].offset = c->out_queued;
		c->marks[c->n_marks].fd = o->fd;
		c->n_marks++;
		o->fd = -1;
	}
	evbuffer_add(c->out, bytes, len);
	c->out_queued += len;
	ipc_out_free(o);
	return true;
}

/*
 * Small frames wait for the end of the loop's turn, so every frame of one
 * turn (the replies to a batch of requests, the frames of pipelined
 * commands) goes out in one sendmsg() and wakes the peer once; a buffer of
 * IPC_DATA_CHUNK or more is written at once, as before, so bulk data never
 * piles up in memory.
 */
void
ipc_conn_send(struct ipc_conn *c, struct ipc_out *o)
{
	if (!ipc_conn_queue(c, o))
		return;
	if (evbuffer_get_length(c->out) < IPC_DATA_CHUNK) {
		event_active(c->ev_write, EV_WRITE, 0);
		return;
	}
	if (ipc_conn_flush(c) == -1)
		ipc_conn_close(c, strerror(errno));
}

void
ipc_conn_send_soon(struct ipc_conn *c, struct ipc_out *o)
{
	/* The write callback flushes once the current callbacks are done. */
	if (ipc_conn_queue(c, o))
		event_active(c->ev_write, EV_WRITE, 0);
}

static void
ipc_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_conn *c = arg;

	(void)fd;
	(void)what;
	if (ipc_conn_flush(c) == -1)
		ipc_conn_close(c, strerror(errno));
}

/* Reads what is there, keeping any passed descriptors in arrival order.
 * The bytes land in the input buffer's own space, not copied there from
 * a buffer on the stack (a copy of every message that passes). */
static int
ipc_conn_fill(struct ipc_conn *c, bool *eof)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} ctl;
	struct evbuffer_iovec space[2];
	struct iovec iov[2];
	struct msghdr mh;
	struct cmsghdr *cm;
	ssize_t r;
	int n_space = evbuffer_reserve_space(c->in, 65536, space, 2);
	int n_used = 0;

	if (n_space <= 0)
		log_fatal("out of memory");
	for (int i = 0; i < n_space; i++) {
		iov[i].iov_base = space[i].iov_base;
		iov[i].iov_len = space[i].iov_len;
	}
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)n_space;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
	if (r == -1)
		return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		    ? 0 : -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t nfd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (c->n_in_fds == IPC_MAX_FDS_QUEUED) {
				close(fd);
				errno = EMFILE;
				return -2;
			}
			c->in_fds[c->n_in_fds++] = fd;
		}
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		errno = EMSGSIZE;
		return -2;
	}
	if (r == 0) {
		*eof = true;
		return 0;
	}
	/* What was read, in the reserved space it filled. */
	while (n_used < n_space && r > 0) {
		if ((size_t)r < space[n_used].iov_len)
			space[n_used].iov_len = (size_t)r;
		r -= (ssize_t)space[n_used].iov_len;
		n_used++;
	}
	if (evbuffer_commit_space(c->in, space, n_used) == -1)
		log_fatal("evbuffer_commit_space failed");
	return 1;
}

/* Handles the peer's HELLO; returns -1 (connection closed) if it is bad. */
static int
ipc_conn_hello(struct ipc_conn *c, struct ipc_msg *m)
{
	uint32_t version;
	const char *name;

	if (ipc_get_u32(m, &version) == -1 || ipc_get_str(m, &name) == -1 ||
	    ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(c, "malformed HELLO");
		return -1;
	}
	if (version != IPC_VERSION) {
		ipc_conn_protocol_error(c, "IPC version %u, expected %u", version,
		    IPC_VERSION);
		return -1;
	}
	tern_strlcpy(c->peer, name, sizeof(c->peer));
	c->peer_hello = true;
	return 0;
}

/* Delivers every complete frame in the input buffer. */
static void
ipc_conn_dispatch(struct ipc_conn *c)
{
	while (!c->dead) {
		struct ipc_header hdr;
		struct ipc_msg m;
		uint8_t head[IPC_HEADER_SIZE];
		const char *why = NULL;
		size_t avail = evbuffer_get_length(c->in);
		int rc;

		if (avail < IPC_HEADER_SIZE)
			break;
		evbuffer_copyout(c->in, head, IPC_HEADER_SIZE);
		rc = ipc_header_decode(head, IPC_HEADER_SIZE, &hdr, &why);
		if (rc == -1) {
			ipc_conn_protocol_error(c, "%s", why);
			break;
		}
		if (avail < IPC_HEADER_SIZE + (size_t)hdr.length)
			break;
		memset(&m, 0, sizeof(m));
		m.type = hdr.type;
		m.flags = hdr.flags;
		m.reqid = hdr.reqid;
		m.len = hdr.length;
		m.fd = -1;
		m.data = evbuffer_pullup(c->in, (ev_ssize_t)(IPC_HEADER_SIZE + hdr.length))
		    + IPC_HEADER_SIZE;
		if (hdr.flags & IPC_F_FD) {
			if (c->n_in_fds == 0) {
				ipc_conn_protocol_error(c, "frame promised a descriptor "
				    "that did not arrive");
				break;
			}
			m.fd = c->in_fds[0];
			memmove(c->in_fds, c->in_fds + 1,
			    (c->n_in_fds - 1) * sizeof(int));
			c->n_in_fds--;
		}
		if (!c->peer_hello) {
			if (hdr.type != IPC_HELLO)
				ipc_conn_protocol_error(c, "%s before HELLO",
				    ipc_type_name(hdr.type));
			else
				ipc_conn_hello(c, &m);
		} else if (hdr.type == IPC_HELLO) {
			ipc_conn_protocol_error(c, "second HELLO");
		} else {
			c->dispatching++;
			c->on_msg(c, &m, c->arg);
			c->dispatching--;
		}
		if (m.fd != -1)
			close(m.fd);
		evbuffer_drain(c->in, IPC_HEADER_SIZE + hdr.length);
	}
}

static void
ipc_conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_conn *c = arg;
	bool eof = false;
	int rc;

	(void)fd;
	(void)what;
	rc = ipc_conn_fill(c, &eof);
	if (rc == -2) {
		ipc_conn_protocol_error(c, "descriptor passing failed: %s",
		    strerror(errno));
	} else if (rc == -1) {
		ipc_conn_close(c, strerror(errno));
		return;
	}
	if (rc > 0)
		ipc_conn_dispatch(c);
	if (c->freed_in_dispatch) {
		c->freed_in_dispatch = false;
		ipc_conn_free(c);
		return;
	}
	if (eof)
		ipc_conn_close(c, evbuffer_get_length(c->in) > 0
		    ? "connection closed in the middle of a frame"
		    : "connection closed");
}

int
ipc_connect_unix(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (tern_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* A local connect completes at once or fails; it does not block. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	fd_set_nonblock(fd);
	return fd;
}

int
ipc_listen_unix(const char *path, unsigned mode)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (tern_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	unlink(path);
	old = umask(0777 & ~(mode_t)mode);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int saved = errno;
		umask(old);
		close(fd);
		errno = saved;
		return -1;
	}
	umask(old);
	if (chmod(path, (mode_t)mode) == -1 || listen(fd, 512) == -1) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}
