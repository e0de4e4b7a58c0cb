/*
 * daemon.h - the one startup shape of every tern daemon, written once:
 * parse -c/-v, load the config, pick up the sockets the master passed,
 * open privileged resources, chroot, drop privileges, then run the
 * libevent loop. SIGTERM starts a drain: stop taking new work, finish what
 * is in flight, exit. The privilege drop is auditable here and only here.
 */
#ifndef TERN_DAEMON_H
#define TERN_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct event_base;
struct daemon;

/* What a daemon tells the skeleton about itself. */
struct daemon_spec {
	const char *name;		/* "smtpd": log ident and socket names */
	/* As root, chroot into the daemon's jail, run_dir/jail/NAME: only
	 * the sockets ternd binds there (jails in service.c) are reachable. */
	bool chroot_run_dir;
	/* Before the privilege drop: read keys and certificates. */
	void (*open_privileged)(struct daemon *d);
	/* SIGTERM: stop accepting work; call daemon_exit() when idle. */
	void (*drain)(struct daemon *d);
};

/* A socket passed by the master ("listen:submission", "unix:cleanup"). */
struct daemon_socket {
	char *name;
	int fd;
};

struct daemon {
	const struct daemon_spec *spec;
	struct tern_config *cfg;
	struct event_base *base;
	struct daemon_socket *sockets;
	size_t n_sockets;
	bool draining;
	bool in_setup;			/* in daemon_setup_wait() */
	bool chrooted;
	void *state;			/* the daemon's own state */
};

/* Sets up everything up to the event loop; exits on any failure. */
void daemon_init(struct daemon *d, const struct daemon_spec *spec, int argc,
    char **argv);
/* Runs the event loop until daemon_exit(); returns the exit status. */
int daemon_run(struct daemon *d);
/* Waits ms during setup (before daemon_run) for what another daemon
 * makes; a SIGTERM meanwhile ends the process at once. */
void daemon_setup_wait(struct daemon *d, unsigned ms);
/* Leaves the event loop at its next turn. */
void daemon_exit(struct daemon *d);
/* The descriptor passed under name, or -1. */
int daemon_socket(const struct daemon *d, const char *name);
/* Path of a service's Unix socket ("cleanup" -> run_dir/private/cleanup,
 * or run_dir/jail/NAME/private/cleanup for a jailed daemon), correct
 * inside the chroot too. */
void daemon_service_path(const struct daemon *d, const char *service,
    char *buf, size_t size);

/* Environment the master uses to pass sockets and its pid. */
#define DAEMON_ENV_FDS		"TERN_FDS"
#define DAEMON_ENV_MASTER	"TERN_MASTER_PID"

#endif
