/*
 * tern-smtpd - the SMTP server for submission (587), smtps (465) and
 * inbound feedback (25). It parses untrusted network input, so it runs
 * unprivileged, chrooted into run_dir when started as root, cannot write
 * the queue and cannot read keys.
 *
 * This first version greets and then answers every command with 421:
 * the session state machine arrives with the submission issue.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "util.h"

struct smtpd {
	struct daemon d;
	struct evconnlistener **listeners;
	size_t n_listeners;
	size_t n_sessions;
};

static struct smtpd smtpd;

static void
session_close(struct bufferevent *bev)
{
	bufferevent_free(bev);
	smtpd.n_sessions--;
	if (smtpd.d.draining && smtpd.n_sessions == 0)
		daemon_exit(&smtpd.d);
}

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_write(bev, "421 4.3.2 Service not available, closing "
	    "transmission channel\r\n", 63);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (!(bufferevent_get_enabled(bev) & EV_READ))
		session_close(bev);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	session_close(bev);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct bufferevent *bev;
	char *greeting;

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	bev = bufferevent_socket_new(smtpd.d.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	smtpd.n_sessions++;
	bufferevent_setcb(bev, session_read_cb, session_write_cb, session_event_cb,
	    NULL);
	greeting = xasprintf("220 %s ESMTP tern\r\n", smtpd.d.cfg->server.hostname);
	bufferevent_write(bev, greeting, strlen(greeting));
	free(greeting);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void
smtpd_drain(struct daemon *d)
{
	for (size_t i = 0; i < smtpd.n_listeners; i++)
		evconnlistener_free(smtpd.listeners[i]);
	smtpd.n_listeners = 0;
	if (smtpd.n_sessions == 0)
		daemon_exit(d);
}

static const struct daemon_spec smtpd_spec = {
	.name = "smtpd",
	.chroot_run_dir = true,
	.drain = smtpd_drain,
};

int
main(int argc, char **argv)
{
	struct daemon *d = &smtpd.d;

	daemon_init(d, &smtpd_spec, argc, argv);
	for (size_t i = 0; i < d->n_sockets; i++) {
		struct evconnlistener *l;

		if (strncmp(d->sockets[i].name, "listen:", 7) != 0)
			continue;
		fd_set_nonblock(d->sockets[i].fd);
		l = evconnlistener_new(d->base, accept_cb, NULL,
		    LEV_OPT_CLOSE_ON_FREE, -1, d->sockets[i].fd);
		if (l == NULL)
			log_fatal("cannot listen on %s", d->sockets[i].name);
		smtpd.listeners = xreallocarray(smtpd.listeners, smtpd.n_listeners + 1,
		    sizeof(*smtpd.listeners));
		smtpd.listeners[smtpd.n_listeners++] = l;
	}
	return daemon_run(d);
}
