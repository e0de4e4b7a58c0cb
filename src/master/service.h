/*
 * service.h - the daemons ternd runs, and their supervision: start with
 * the sockets each needs, log every exit, restart with backoff, throttle
 * a daemon that keeps failing at start. Runs in ternd (root or the
 * invoking user).
 */
#ifndef TERN_MASTER_SERVICE_H
#define TERN_MASTER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

struct event_base;
struct timeval;

/* One daemon program and how ternd runs it. */
struct service_def {
	const char *name;		/* binary is daemon_dir/tern-NAME */
	const char *unix_socket;	/* served at run_dir/private/NAME, or NULL */
	bool tcp_listeners;		/* gets every [listen] socket */
	bool singleton;			/* never two at once, even on reload */
	/* How many to run; NULL means one. */
	unsigned (*instances)(const struct tern_config *cfg);
	/* Hands mail to cleanup from outside (SMTP, the maildrop): stopped
	 * first on SIGTERM, so its open transactions still find cleanup. */
	bool front_end;
};

/* A listening socket ternd holds and passes down. */
struct master_socket {
	char *name;			/* "listen:submission", "unix:cleanup",
					 * "public:sendmail", "unix:cleanup-smtpd"
					 * (tern-cleanup's socket in smtpd's jail) */
	int fd;
	struct cfg_sockaddr addr;	/* TCP listeners only */
	/* Unix sockets: the file ternd bound, removed when ternd exits; a
	 * jail's socket must still be that file when its daemon starts. */
	char *path;
	dev_t dev;
	ino_t ino;
};

struct supervisor;

/* Creates the supervisor over the table of services. */
struct supervisor *supervisor_new(struct event_base *base);
/* Binds a Unix socket for every service that serves one. */
int supervisor_bind_unix(struct supervisor *sv, const struct tern_config *cfg);
/* Binds the public sockets (run_dir/public/NAME, mode 0666) that any
 * local user may connect to; run_dir/public must exist. */
int supervisor_bind_public(struct supervisor *sv, const struct tern_config *cfg);
/* Binds the TCP listeners of cfg, reusing sockets for unchanged addresses. */
int supervisor_bind_listeners(struct supervisor *sv, const struct tern_config *cfg);
/* Makes every jail (run_dir/jail/NAME) and binds in it the sockets its
 * daemon may reach (after supervisor_bind_unix); spawning a jailed
 * service checks its jail again. */
int supervisor_make_jails(struct supervisor *sv, const struct tern_config *cfg);
/* Starts every service instance the config asks for. */
void supervisor_start(struct supervisor *sv, const struct tern_config *cfg);
/* SIGCHLD: reaps children, logs them, schedules restarts. */
void supervisor_reap(struct supervisor *sv);
/* SIGHUP with a valid new config: replace every daemon gracefully. */
void supervisor_reload(struct supervisor *sv, const struct tern_config *cfg);
/*
 * SIGTERM: close the listeners and ask the front ends to drain; once they
 * have exited, or after front_end_timeout (stragglers are then killed),
 * ask every other daemon to drain.
 */
void supervisor_stop(struct supervisor *sv, const struct timeval *front_end_timeout);
/* Sends SIGKILL to every child still running. */
void supervisor_kill_all(struct supervisor *sv);
size_t supervisor_children(const struct supervisor *sv);
/* Closes every socket and removes the Unix socket files, those in the
 * jails too. */
void supervisor_free(struct supervisor *sv);

#endif
