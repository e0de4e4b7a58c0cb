/*
 * tern-cleanup - turns what smtpd, sendmail and bounce hand over into a
 * correct, signed message committed to the queue. It serves
 * run_dir/private/cleanup (the CLEANUP_* conversation in ipc.h): checks
 * the envelope and the suppression list, fixes up the headers, has the
 * message signed by tern-signer, commits it with the group committer and
 * answers 250 only after the synced commit; then tells tern-qmgr.
 *
 * It also serves run_dir/public/sendmail, where any local user's
 * sendmail(1) connects: those clients are untrusted, identified by the
 * kernel (SO_PEERCRED) and recorded as local submissions whatever they
 * claim (txn.c). And run_dir/jail/smtpd/private/cleanup, the one socket
 * in tern-smtpd's jail: its clients may claim only what smtpd takes in,
 * submission and inbound mail, never a DSN of tern-bounce or a local
 * submission (txn.c).
 *
 * It is a queue writer: it runs as the tern user with write access to
 * queue_dir, not chrooted, and never reads keys or network input.
 *
 * The story of a message is in txn.c; this file sets up and runs the loop.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "peer_proof.h"
#include "signer_client.h"
#include "util.h"
#include "verp.h"

/* Messages committed at most in one group (one fsync). */
#define COMMIT_GROUP_MAX	256

struct cleanup cleanup;

/* A local user's connection may not sit idle: [smtpd] timeout, as an
 * SMTP client gets. The sendmail command sends a whole message at once;
 * only a connection left open holds a slot. */
static void
client_idle_restart(struct client *cl)
{
	struct timeval tv = { cleanup.d.cfg->smtpd.timeout, 0 };

	evtimer_add(cl->idle, &tv);
}

static void
client_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;

	(void)fd;
	(void)what;
	if (txn_client_waits_for_us(cl)) {
		client_idle_restart(cl);
		return;
	}
	ipc_conn_protocol_error(cl->conn, "sendmail socket: idle for %lld s "
	    "(uid=%lu user=%s)", (long long)cleanup.d.cfg->smtpd.timeout,
	    (unsigned long)cl->peer.uid, cl->peer.user);
}

/* tern-qmgr creates the VERP key after we start: noted once it is there
 * (the identity stays zero, which no file has, until then). */
static void
note_bounce_proof(void)
{
	struct stat *st = &cleanup.proofs[CLIENT_PROOF_BOUNCE - 1];
	char *path;

	if (st->st_ino != 0)
		return;
	path = xasprintf("%s/%s", cleanup.d.cfg->server.queue_dir,
	    VERP_KEY_FILE);
	if (stat(path, st) == -1)
		memset(st, 0, sizeof(*st));
	free(path);
}

static void
client_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct client *cl = arg;

	(void)c;
	if (cl->idle != NULL)
		client_idle_restart(cl);
	if (cl->is_private && !cl->proof_seen) {
		int which;

		note_bounce_proof();
		which = peer_proof_which(m, cleanup.proofs, 2);

		cl->proof_seen = true;
		cl->proof = which == -1 ? CLIENT_PROOF_NONE :
		    (enum client_proof)(which + 1);
	}
	txn_dispatch(cl, m);
}

static void
client_close_cb(struct ipc_conn *c, const char *why, void *arg)
{
	struct client *cl = arg;

	log_debug("client %s disconnected: %s", ipc_conn_peer_name(c), why);
	txn_client_gone(cl);
	if (cl->is_local_user)
		cleanup.n_local_clients--;
	if (cl->idle != NULL)
		event_free(cl->idle);
	ipc_conn_free(c);
	cleanup.n_clients--;
	cl->conn = NULL;
	/* The look-up thread still holds it: freed when it hands it back. */
	if (!cl->naming)
		free(cl);
}

/* A local user's name is known (user_lookup.h): its requests are read. */
static void
local_user_named(struct user_lookup_req *req)
{
	struct client *cl = req->arg;

	cl->naming = false;
	if (cl->conn == NULL) {
		free(cl);
		return;
	}
	log_debug("sendmail connection from uid=%lu user=%s pid=%ld",
	    (unsigned long)cl->peer.uid, cl->peer.user, (long)cl->peer.pid);
	ipc_conn_set_reading(cl->conn, true);
	cl->idle = evtimer_new(cleanup.d.base, client_idle_cb, cl);
	if (cl->idle == NULL)
		log_fatal("evtimer_new failed");
	client_idle_restart(cl);
}

/* Which socket a connection came in on decides what its client is. */
enum listener_kind {
	LISTENER_PRIVATE,	/* run_dir/private/cleanup: tern's own */
	LISTENER_SENDMAIL,	/* run_dir/public/sendmail: local users */
	LISTENER_SMTPD,		/* the socket in tern-smtpd's jail */
};
static const enum listener_kind listener_private = LISTENER_PRIVATE;
static const enum listener_kind listener_sendmail = LISTENER_SENDMAIL;
static const enum listener_kind listener_smtpd = LISTENER_SMTPD;

/* arg is the listener's kind. */
static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct client *cl = xcalloc(1, sizeof(*cl));
	enum listener_kind kind = *(const enum listener_kind *)arg;

	(void)l;
	(void)sa;
	(void)salen;
	if (kind == LISTENER_SENDMAIL &&
	    cleanup.n_local_clients >= LOCAL_CLIENTS_MAX) {
		log_warn("sendmail socket: %d local connections already; closing "
		    "a new one", LOCAL_CLIENTS_MAX);
		evutil_closesocket(fd);
		free(cl);
		return;
	}
	if (kind == LISTENER_SENDMAIL) {
		/* Without the kernel's word there is nobody to record. */
		if (peercred_from_socket(fd, &cl->peer) == -1) {
			log_warn("sendmail socket: cannot learn the peer's "
			    "credentials: %s; closing", strerror(errno));
			evutil_closesocket(fd);
			free(cl);
			return;
		}
		cl->is_local_user = true;
		cleanup.n_local_clients++;
	}
	cl->is_smtpd = kind == LISTENER_SMTPD;
	cl->is_private = kind == LISTENER_PRIVATE;
	fd_set_nonblock(fd);
	fd_set_cloexec(fd, true);
	cl->conn = ipc_conn_new(cleanup.d.base, fd, "cleanup", client_msg_cb,
	    client_close_cb, cl);
	cleanup.n_clients++;
	if (cl->is_local_user) {
		/* Greeted at once, read once named: the name may take a
		 * while (a directory service), and the loop serves everyone. */
		ipc_conn_set_reading(cl->conn, false);
		cl->naming = true;
		user_lookup_submit(cleanup.users, &cl->lookup, &cl->peer, cl);
	}
}

static void
qmgr_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	(void)arg;
	ipc_conn_protocol_error(c, "unexpected message %s from qmgr",
	    ipc_type_name(m->type));
}

void
cleanup_maybe_exit(void)
{
	if (cleanup.d.draining && cleanup.n_ending == 0 &&
	    (cleanup.n_open == 0 || cleanup.drain_expired))
		daemon_exit(&cleanup.d);
}

/* The drain's time is up: what is past END is still awaited (it may be
 * committed already); open transactions were never acknowledged. */
static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_warn("draining: %zu transaction(s) still open after %lld s; "
	    "exiting without them", cleanup.n_open,
	    (long long)cleanup.d.cfg->server.shutdown_timeout);
	cleanup.drain_expired = true;
	cleanup_maybe_exit();
}

/*
 * SIGTERM: take no new connection or transaction; exit once the
 * transactions clients have open are done (ternd stops the front ends
 * first, so there are none then; a SIGTERM of our own, or a reload,
 * finds tern-smtpd's sessions in the middle of theirs), bounded by
 * shutdown_timeout, and every message past END has been answered.
 */
static void
listener_close(struct evconnlistener **l)
{
	if (*l != NULL)
		evconnlistener_free(*l);
	*l = NULL;
}

static void
cleanup_drain(struct daemon *d)
{
	struct timeval tv = { d->cfg->server.shutdown_timeout, 0 };

	listener_close(&cleanup.listener);
	listener_close(&cleanup.public_listener);
	listener_close(&cleanup.smtpd_listener);
	if (cleanup.n_open > 0) {
		log_info("draining: waiting for %zu open transaction(s)",
		    cleanup.n_open);
		cleanup.ev_drain_timeout = evtimer_new(d->base, drain_timeout_cb,
		    NULL);
		if (cleanup.ev_drain_timeout == NULL)
			log_fatal("evtimer_new failed");
		evtimer_add(cleanup.ev_drain_timeout, &tv);
	}
	cleanup_maybe_exit();
}

/* Clears reader slots of dead processes now and then (SCHEMA.md). */
static void
reader_check_cb(evutil_socket_t fd, short what, void *arg)
{
	int cleared = 0;

	(void)fd;
	(void)what;
	(void)arg;
	if (queue_reader_check(cleanup.q, &cleared) == -1)
		log_warn("queue reader check failed: %s",
		    queue_strerror(queue_last_error()));
	else if (cleared > 0)
		log_info("cleared %d stale queue reader slot(s)", cleared);
}

/* True when some [domain] has DKIM selectors: a signer is needed. */
static bool
has_dkim_domains(const struct tern_config *cfg)
{
	for (size_t i = 0; i < cfg->n_domains; i++)
		if (cfg->domains[i].n_dkim > 0)
			return true;
	return false;
}

/* Accepts on the socket the master passed as name, its clients of kind;
 * NULL when there is none. */
static struct evconnlistener *
accept_on(struct daemon *d, const char *name, const enum listener_kind *kind)
{
	struct evconnlistener *l;
	int fd = daemon_socket(d, name);

	if (fd == -1)
		return NULL;
	fd_set_nonblock(fd);
	l = evconnlistener_new(d->base, accept_cb, (void *)kind,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (l == NULL)
		log_fatal("cannot accept on %s", name);
	return l;
}

static const struct daemon_spec cleanup_spec = {
	.name = "cleanup",
	.chroot_run_dir = false,	/* it needs queue_dir */
	.drain = cleanup_drain,
};

int
main(int argc, char **argv)
{
	struct daemon *d = &cleanup.d;
	struct queue_options qo;
	char path[4096];
	int status;

	daemon_init(d, &cleanup_spec, argc, argv);
	malloc_keep_freed_heap();
	tzset();	/* Date and Received fields use local time */

	queue_options_from_config(&qo, d->cfg, 0);
	if ((cleanup.q = queue_open(&qo)) == NULL)
		log_fatal("cannot open the queue in %s: %s", qo.dir,
		    queue_strerror(queue_last_error()));
	cleanup.committer = queue_committer_start(cleanup.q, COMMIT_GROUP_MAX);
	pthread_mutex_init(&cleanup.done_lock, NULL);
	cleanup.ev_done = event_new(d->base, -1, 0, txn_commits_done, NULL);
	if (cleanup.ev_done == NULL)
		log_fatal("event_new failed");

	{
		struct timeval minute = { 60, 0 };
		struct event *ev = event_new(d->base, -1, EV_PERSIST,
		    reader_check_cb, NULL);

		if (ev == NULL || event_add(ev, &minute) == -1)
			log_fatal("cannot set up the reader check timer");
	}

	/* Who may hand in what on the private socket, and what shows
	 * tern-signer we are not a sandboxed daemon (peer_proof.h). */
	peer_proof_note(&cleanup.proofs[CLIENT_PROOF_PRIVATE - 1],
	    d->cfg->server.run_dir, "private");
	cleanup.private_fd = peer_proof_open_private(d->cfg->server.run_dir);
	if (cleanup.private_fd == -1)
		log_fatal("%s/private: %s", d->cfg->server.run_dir,
		    strerror(errno));

	daemon_service_path(d, "qmgr", path, sizeof(path));
	cleanup.qmgr = ipc_client_new(d->base, path, "cleanup", qmgr_msg_cb,
	    NULL, NULL);
	if (has_dkim_domains(d->cfg)) {
		daemon_service_path(d, "signer", path, sizeof(path));
		cleanup.signer = signer_client_new(d->base, path,
		    cleanup.private_fd);
	}

	cleanup.listener = accept_on(d, "unix:cleanup", &listener_private);
	if (cleanup.listener == NULL)
		log_fatal("no cleanup socket from the master (run by ternd)");
	/* tern-smtpd reaches only this one, in its jail (ternd(8)). */
	cleanup.smtpd_listener = accept_on(d, "unix:cleanup-smtpd",
	    &listener_smtpd);
	if (cleanup.smtpd_listener == NULL)
		log_warn("no socket for tern-smtpd's jail from the master: "
		    "tern-smtpd cannot hand over mail");
	/* The listener's argument marks its clients as local users. */
	cleanup.public_listener = accept_on(d, "public:sendmail",
	    &listener_sendmail);
	if (cleanup.public_listener == NULL)
		log_warn("no public sendmail socket from the master: the sendmail "
		    "command will use the maildrop");
	else
		cleanup.users = user_lookup_new(d->base, local_user_named);
	log_debug("ready");

	status = daemon_run(d);

	/* Everything past END was answered; whatever else was in flight
	 * was never acknowledged. */
	queue_committer_stop(cleanup.committer);
	queue_close(cleanup.q);
	if (cleanup.ev_drain_timeout != NULL)
		event_free(cleanup.ev_drain_timeout);
	return status;
}
