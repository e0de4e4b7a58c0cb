/*
 * daemon.c - the startup skeleton shared by every tern daemon: config,
 * inherited sockets, privileged resources, chroot, privilege drop, event
 * loop and the SIGTERM drain. Runs as root only until daemon_init returns.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "sandbox.h"
#include "util.h"

static bool daemon_chrooted;

/*
 * LeakSanitizer asks this at exit; inside a chroot or a sandbox
 * (sandbox.c) it cannot read /proc and would fail the exit status of a
 * healthy daemon, so it stays off there.
 */
int __lsan_is_turned_off(void);
int
__lsan_is_turned_off(void)
{
	return daemon_chrooted || sandbox_is_on();
}

static void
daemon_usage(const char *name)
{
	fprintf(stderr, "usage: tern-%s [-v] [-c config]\n"
	    "tern-%s is started by ternd(8); see tern-%s(8).\n", name, name, name);
	exit(2);
}

/* Reads TERN_FDS: "listen:submission=3 unix:cleanup=4". */
static void
daemon_collect_sockets(struct daemon *d)
{
	const char *env = getenv(DAEMON_ENV_FDS);
	char *copy, *save = NULL, *item;

	if (env == NULL)
		return;
	copy = xstrdup(env);
	for (item = strtok_r(copy, " ", &save); item != NULL;
	    item = strtok_r(NULL, " ", &save)) {
		char *eq = strrchr(item, '=');
		uint64_t fd;

		if (eq == NULL || parse_uint64(eq + 1, INT_MAX, &fd) == -1)
			log_fatal("bad %s entry '%s'", DAEMON_ENV_FDS, item);
		*eq = '\0';
		d->sockets = xreallocarray(d->sockets, d->n_sockets + 1,
		    sizeof(*d->sockets));
		d->sockets[d->n_sockets].name = xstrdup(item);
		d->sockets[d->n_sockets].fd = (int)fd;
		d->n_sockets++;
		fd_set_cloexec((int)fd, true);
	}
	free(copy);
	unsetenv(DAEMON_ENV_FDS);
}

int
daemon_socket(const struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_sockets; i++)
		if (strcmp(d->sockets[i].name, name) == 0)
			return d->sockets[i].fd;
	return -1;
}

/*
 * A jailed daemon sees its jail (run_dir/jail/NAME, made by ternd) and
 * nothing else of run_dir, chrooted or not, so a development run uses
 * the same sockets as a root one.
 */
void
daemon_service_path(const struct daemon *d, const char *service, char *buf,
    size_t size)
{
	if (d->chrooted)
		snprintf(buf, size, "/private/%s", service);
	else if (d->spec->chroot_run_dir)
		snprintf(buf, size, "%s/jail/%s/private/%s",
		    d->cfg->server.run_dir, d->spec->name, service);
	else
		snprintf(buf, size, "%s/private/%s", d->cfg->server.run_dir,
		    service);
}

/*
 * As root: optionally chroot into the daemon's jail, run_dir/jail/NAME,
 * where ternd binds the only sockets the daemon may reach
 * (jails in src/master/service.c), then become the configured
 * user for good. As anyone else: stay who we are (development and tests).
 */
static void
daemon_drop_privileges(struct daemon *d)
{
	const char *user = d->cfg->server.user;
	struct passwd *pw;

	if (geteuid() != 0)
		return;
	pw = getpwnam(user);
	if (pw == NULL)
		log_fatal("user '%s' (server.user) does not exist", user);
	if (pw->pw_uid == 0)
		log_fatal("server.user must not be root");
	if (d->spec->chroot_run_dir) {
		char *jail = xasprintf("%s/jail/%s", d->cfg->server.run_dir,
		    d->spec->name);

		if (chroot(jail) == -1 || chdir("/") == -1)
			log_fatal("chroot %s: %s (ternd makes the jail of a "
			    "service whose entry in service_defs has one)", jail,
			    strerror(errno));
		free(jail);
		d->chrooted = true;
		daemon_chrooted = true;
	}
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		log_fatal("cannot drop privileges to %s: %s", user, strerror(errno));
	/* Make sure there is no way back. */
	if (setuid(0) != -1 || geteuid() == 0)
		log_panic("privileges were not dropped");
}

/* Dies with the master: a daemon never outlives the process that runs it. */
static void
daemon_follow_master(void)
{
	const char *env = getenv(DAEMON_ENV_MASTER);
	uint64_t master;

	if (env == NULL || parse_uint64(env, INT_MAX, &master) == -1)
		return;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if ((uint64_t)getppid() != master)
		log_fatal("the master (pid %llu) is gone", (unsigned long long)master);
}

static void
daemon_sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (d->in_setup) {
		/* Nothing taken yet, nothing to drain: waiting 30 s for a
		 * queue that will not come would only hold ternd's stop. */
		log_debug("signal %d during setup: exiting", (int)sig);
		exit(0);
	}
	if (d->draining) {
		log_info("second signal %d: exiting now", (int)sig);
		exit(0);
	}
	d->draining = true;
	log_debug("signal %d: draining", (int)sig);
	if (d->spec->drain != NULL)
		d->spec->drain(d);
	else
		daemon_exit(d);
}

void
daemon_init(struct daemon *d, const struct daemon_spec *spec, int argc,
    char **argv)
{
	const char *config_path = NULL;
	bool verbose = false;
	struct event *ev;
	int ch;

	memset(d, 0, sizeof(*d));
	d->spec = spec;
	log_init(spec->name, LOG_TARGET_STDERR, false);
	while ((ch = getopt(argc, argv, "c:vh")) != -1) {
		switch (ch) {
		case 'c':
			config_path = optarg;
			break;
		case 'v':
			verbose = true;
			break;
		default:
			daemon_usage(spec->name);
		}
	}
	if (optind != argc)
		daemon_usage(spec->name);

	d->cfg = config_load_or_exit(config_default_path(config_path));
	log_init(spec->name, d->cfg->server.log, verbose || d->cfg->server.verbose);
	signal(SIGPIPE, SIG_IGN);
	daemon_collect_sockets(d);
	daemon_follow_master();

	if (spec->open_privileged != NULL)
		spec->open_privileged(d);
	daemon_drop_privileges(d);
	/* A credential change clears the parent-death signal: set it again. */
	daemon_follow_master();

	if (evthread_use_pthreads() == -1)
		log_fatal("evthread_use_pthreads failed");
	d->base = event_base_new();
	if (d->base == NULL)
		log_fatal("event_base_new failed");
	ev = evsignal_new(d->base, SIGTERM, daemon_sigterm_cb, d);
	event_add(ev, NULL);
	/*
	 * Ctrl-C reaches the whole process group; the master turns it into
	 * one SIGTERM per daemon, so a daemon ignores SIGINT itself. Reload
	 * is the master's job too: it replaces daemons with fresh ones.
	 */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
}

int
daemon_run(struct daemon *d)
{
	if (event_base_dispatch(d->base) == -1)
		log_fatal("event loop failed");
	log_debug("exiting");
	return 0;
}

void
daemon_setup_wait(struct daemon *d, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	/* Only the SIGTERM event is there yet: the loop sees the signal. */
	d->in_setup = true;
	if (event_base_loopexit(d->base, &tv) == -1 ||
	    event_base_dispatch(d->base) == -1)
		log_fatal("event loop failed");
	d->in_setup = false;
}

void
daemon_exit(struct daemon *d)
{
	event_base_loopexit(d->base, NULL);
}
