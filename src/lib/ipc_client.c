/*
 * ipc_client.c - a connection to another daemon's Unix socket that comes
 * back by itself when that daemon is restarted by the master.
 * Linked into every daemon that talks to another; needs no privilege.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "util.h"

#define RETRY_MIN_MS	100
#define RETRY_MAX_MS	2000

struct ipc_client {
	struct event_base *base;
	char *path;
	char *name;
	struct ipc_conn *conn;
	struct event *ev_retry;
	unsigned retry_ms;
	bool warned;
	ipc_msg_cb on_msg;
	ipc_state_cb on_state;
	void *arg;
	int proof_fd;			/* ipc_client_set_proof, or -1 */
	bool proof_sent;		/* on the current connection */
};

static void ipc_client_connect(struct ipc_client *cl);

static void
ipc_client_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct ipc_client *cl = arg;

	cl->on_msg(c, m, cl->arg);
}

static void
ipc_client_schedule(struct ipc_client *cl)
{
	struct timeval tv = { cl->retry_ms / 1000, (cl->retry_ms % 1000) * 1000 };

	event_add(cl->ev_retry, &tv);
	cl->retry_ms = cl->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
	    : cl->retry_ms * 2;
}

static void
ipc_client_close_cb(struct ipc_conn *c, const char *why, void *arg)
{
	struct ipc_client *cl = arg;

	log_warn("lost connection to %s: %s", cl->path, why);
	ipc_conn_free(c);
	cl->conn = NULL;
	cl->retry_ms = RETRY_MIN_MS;
	ipc_client_schedule(cl);
	if (cl->on_state != NULL)
		cl->on_state(cl, false, cl->arg);
}

static void
ipc_client_connect(struct ipc_client *cl)
{
	int fd = ipc_connect_unix(cl->path);

	if (fd == -1) {
		/* Expected while the master is still starting the service. */
		if (!cl->warned && cl->retry_ms >= RETRY_MAX_MS) {
			log_warn("cannot connect to %s: %s (retrying)", cl->path,
			    strerror(errno));
			cl->warned = true;
		}
		ipc_client_schedule(cl);
		return;
	}
	cl->warned = false;
	cl->proof_sent = false;
	cl->conn = ipc_conn_new(cl->base, fd, cl->name, ipc_client_msg_cb,
	    ipc_client_close_cb, cl);
	if (cl->on_state != NULL)
		cl->on_state(cl, true, cl->arg);
}

static void
ipc_client_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ipc_client_connect(arg);
}

struct ipc_client *
ipc_client_new(struct event_base *base, const char *path, const char *name,
    ipc_msg_cb on_msg, ipc_state_cb on_state, void *arg)
{
	struct ipc_client *cl = xcalloc(1, sizeof(*cl));

	cl->base = base;
	cl->proof_fd = -1;
	cl->path = xstrdup(path);
	cl->name = xstrdup(name);
	cl->on_msg = on_msg;
	cl->on_state = on_state;
	cl->arg = arg;
	cl->retry_ms = RETRY_MIN_MS;
	cl->ev_retry = evtimer_new(base, ipc_client_retry_cb, cl);
	if (cl->ev_retry == NULL)
		log_fatal("evtimer_new failed");
	/* Connect from the loop, so on_state never runs inside this call. */
	event_active(cl->ev_retry, 0, 0);
	return cl;
}

bool
ipc_client_is_up(const struct ipc_client *cl)
{
	return cl->conn != NULL;
}

struct ipc_conn *
ipc_client_conn(const struct ipc_client *cl)
{
	return cl->conn;
}

void
ipc_client_set_proof(struct ipc_client *cl, int fd)
{
	cl->proof_fd = fd;
}

/* The first frame of a connection carries a copy of the proof. */
static void
ipc_client_attach_proof(struct ipc_client *cl, struct ipc_out *o)
{
	int fd;

	if (cl->proof_fd == -1 || cl->proof_sent)
		return;
	if ((fd = dup(cl->proof_fd)) == -1)
		log_fatal("dup: %s", strerror(errno));
	fd_set_cloexec(fd, true);
	ipc_out_set_fd(o, fd);
	cl->proof_sent = true;
}

int
ipc_client_send(struct ipc_client *cl, struct ipc_out *o)
{
	if (cl->conn == NULL) {
		ipc_out_free(o);
		return -1;
	}
	ipc_client_attach_proof(cl, o);
	ipc_conn_send(cl->conn, o);
	return 0;
}

int
ipc_client_send_soon(struct ipc_client *cl, struct ipc_out *o)
{
	if (cl->conn == NULL) {
		ipc_out_free(o);
		return -1;
	}
	ipc_client_attach_proof(cl, o);
	ipc_conn_send_soon(cl->conn, o);
	return 0;
}

void
ipc_client_free(struct ipc_client *cl)
{
	if (cl == NULL)
		return;
	ipc_conn_free(cl->conn);
	event_free(cl->ev_retry);
	free(cl->path);
	free(cl->name);
	free(cl);
}
