/*
 * tern-smtpd - the SMTP server for submission (587), smtps (465) and
 * inbound feedback (25). It parses untrusted network input, so it runs
 * unprivileged and, when started as root, chrooted into its jail
 * (run_dir/jail/smtpd), where the one socket is private/cleanup (which
 * takes only submissions and inbound mail, tern-cleanup(8)): it cannot
 * write the queue, read keys or reach tern-qmgr or tern-signer. Once set
 * up it is sandboxed (sandbox.c), chrooted or not (a development run):
 * no file may be opened, no TCP port bound or connected to.
 * Every message goes to tern-cleanup, and 250 is said only once cleanup
 * reports the durable commit.
 *
 * The story of this file: take the listening sockets the master passed
 * ("listen:NAME"), load each listener's certificate and the AUTH users
 * while still privileged, drop privileges (daemon.c), connect to cleanup,
 * give up the file system and TCP (sandbox.c), run the event loop. Sessions are in session.c, commands in commands.c.
 */
#include "autoconfig.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "sandbox.h"
#include "smtpd.h"
#include "util.h"

struct smtpd smtpd;

/* Every session is a descriptor: take all the kernel allows us. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Before the privilege drop: certificates, keys and the users file. */
static void
smtpd_open_privileged(struct daemon *d)
{
	for (size_t i = 0; i < d->n_sockets; i++) {
		const struct cfg_listener *cl;
		struct listener *l;

		if (strncmp(d->sockets[i].name, "listen:", 7) != 0)
			continue;
		cl = config_find_listener(d->cfg, d->sockets[i].name + 7);
		if (cl == NULL) {
			log_warn("socket %s has no [listen] section; closed",
			    d->sockets[i].name);
			close(d->sockets[i].fd);
			continue;
		}
		smtpd.listeners = xreallocarray(smtpd.listeners,
		    smtpd.n_listeners + 1, sizeof(*smtpd.listeners));
		l = &smtpd.listeners[smtpd.n_listeners++];
		memset(l, 0, sizeof(*l));
		l->cfg = cl;
		l->fd = d->sockets[i].fd;
		if (cl->tls_cert != NULL && cl->tls_key != NULL)
			l->tls = tls_context_new(cl);
		else if (cl->mode == LISTEN_SMTPS)
			log_fatal("[listen %s]: mode smtps needs tls_cert and tls_key",
			    cl->name);
	}
	auth_load_users(&smtpd);
	raise_fd_limit();
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	(void)evl;
	session_accept(arg, fd, sa, salen);
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	if (l->evl != NULL)
		evconnlistener_enable(l->evl);
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	struct timeval tv = { 1, 0 };

	/*
	 * Out of descriptors (EMFILE, ENFILE): the connection stays in the
	 * backlog and would wake us at once again. Pause this listener for
	 * a second instead of spinning.
	 */
	log_warn("accept on [listen %s]: %s; pausing 1s", l->cfg->name,
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(evl);
	event_base_once(smtpd.d.base, -1, EV_TIMEOUT, accept_resume_cb, l, &tv);
}

/* SIGTERM: no new sessions; open ones hear 421 at their next command. */
static void
smtpd_drain(struct daemon *d)
{
	(void)d;
	for (size_t i = 0; i < smtpd.n_listeners; i++)
		if (smtpd.listeners[i].evl != NULL) {
			evconnlistener_free(smtpd.listeners[i].evl);
			smtpd.listeners[i].evl = NULL;
		}
	session_drain_all();
}

static const struct daemon_spec smtpd_spec = {
	.name = "smtpd",
	.chroot_run_dir = true,
	.open_privileged = smtpd_open_privileged,
	.drain = smtpd_drain,
};

int
main(int argc, char **argv)
{
	struct daemon *d = &smtpd.d;

	daemon_init(d, &smtpd_spec, argc, argv);
	cleanup_link_init(d);
	for (size_t i = 0; i < smtpd.n_listeners; i++) {
		struct listener *l = &smtpd.listeners[i];

		fd_set_nonblock(l->fd);
		l->evl = evconnlistener_new(d->base, accept_cb, l,
		    LEV_OPT_CLOSE_ON_FREE, -1, l->fd);
		if (l->evl == NULL)
			log_fatal("cannot listen on [listen %s]", l->cfg->name);
		evconnlistener_set_error_cb(l->evl, accept_error_cb);
	}
	/* Accepting needs no right; the AUTH thread starts later, sandboxed. */
	sandbox_enter(sandbox_new());
	return daemon_run(d);
}
