/*
 * ternd - the tern master. Reads and validates the config, opens the
 * listening sockets, starts and supervises every daemon, reloads on
 * SIGHUP, and on SIGTERM stops accepting, lets the front ends (smtpd,
 * pickup) and then the other daemons drain (bounded by shutdown_timeout)
 * and exits with no child left behind.
 * Runs as root only to bind and to start daemons that drop privileges
 * themselves; started by an ordinary user it runs everything as that user.
 * It holds no mail.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config.h"
#include "log.h"
#include "maildrop.h"
#include "service.h"
#include "util.h"

struct master {
	struct event_base *base;
	struct tern_config *cfg;
	struct supervisor *sv;
	struct event *ev_stop_timeout;
	char *pid_path;
	int pid_fd;
	bool stopping;
};

static void
usage(void)
{
	fprintf(stderr, "usage: ternd [-f] [-v] [-c config]\n"
	    "  -c FILE  configuration (default: $TERN_CONFIG, else %s/tern/tern.conf)\n"
	    "  -f       stay in the foreground\n"
	    "  -v       verbose logging\n", SYSCONFDIR);
	exit(2);
}

static void
notify_systemd(const char *state)
{
#ifdef HAVE_SYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}

/* Loads the config, printing every error with file and line. */
static struct tern_config *
load_config(const char *path)
{
	struct config_errors errs;
	struct tern_config *cfg = config_load(path, &errs);

	for (size_t i = 0; i < errs.n; i++) {
		if (errs.v[i].line > 0)
			log_warn("%s:%d: %s", errs.v[i].file, errs.v[i].line,
			    errs.v[i].message);
		else
			log_warn("%s: %s", errs.v[i].file, errs.v[i].message);
	}
	config_errors_free(&errs);
	return cfg;
}

/* Creates a directory owned by the daemons' user when we are root. */
static void
make_dir(const char *path, unsigned mode, const struct passwd *owner)
{
	if (mkdir_p(path, mode) == -1)
		log_fatal("cannot create %s: %s", path, strerror(errno));
	if (owner == NULL && chmod(path, (mode_t)mode) == -1)
		log_fatal("chmod %s: %s", path, strerror(errno));
	if (owner != NULL &&
	    set_owner_mode(path, owner->pw_uid, owner->pw_gid, mode) == -1)
		log_fatal("cannot set the owner and mode of %s: %s", path,
		    strerror(errno));
}

/*
 * queue_dir's mode: 0711 when the maildrop's group exists, so that its
 * users reach queue_dir/maildrop (enter, not list), as tern-pickup sets
 * it; else 0700. Set here, before any daemon runs: tern-pickup changing
 * it later would take queue_dir back to root for a moment (no
 * CAP_FOWNER), and the daemons writing there would fail meanwhile.
 */
static unsigned
queue_dir_mode(void)
{
	return getgrnam(MAILDROP_GROUP) != NULL ? 0711 : 0700;
}

/*
 * run_dir/public holds the sockets every local user may connect to: it
 * must be a real directory (no symlink) that only root or tern's user
 * can change, mode 0755, so nobody can put a socket of their own there.
 */
static void
make_public_dir(const char *path, const struct passwd *owner)
{
	struct stat sb;

	if (mkdir(path, 0755) == -1 && errno != EEXIST)
		log_fatal("cannot create %s: %s", path, strerror(errno));
	if (lstat(path, &sb) == -1)
		log_fatal("cannot check %s: %s", path, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		log_fatal("%s is not a directory (a symbolic link?); remove it",
		    path);
	if (sb.st_uid != 0 && sb.st_uid != geteuid() &&
	    (owner == NULL || sb.st_uid != owner->pw_uid))
		log_fatal("%s is owned by uid %lu: it must belong to root or "
		    "tern's user; remove it", path, (unsigned long)sb.st_uid);
	if (chmod(path, 0755) == -1)
		log_fatal("chmod %s: %s", path, strerror(errno));
}

static void
prepare_directories(const struct tern_config *cfg)
{
	struct passwd *owner = NULL;
	char *private, *public;

	if (geteuid() == 0) {
		owner = getpwnam(cfg->server.user);
		if (owner == NULL)
			log_fatal("user '%s' (server.user) does not exist; create it "
			    "(see init/tern.sysusers)", cfg->server.user);
	}
	make_dir(cfg->server.queue_dir, queue_dir_mode(), owner);
	make_dir(cfg->server.run_dir, 0755, NULL);
	private = xasprintf("%s/private", cfg->server.run_dir);
	make_dir(private, 0700, owner);
	free(private);
	public = xasprintf("%s/public", cfg->server.run_dir);
	make_public_dir(public, owner);
	free(public);
}

/* One master per run_dir: the pid file is locked while we run. */
static void
lock_pid_file(struct master *m)
{
	char buf[32];
	int n;

	m->pid_path = xasprintf("%s/ternd.pid", m->cfg->server.run_dir);
	m->pid_fd = open(m->pid_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (m->pid_fd == -1)
		log_fatal("open %s: %s", m->pid_path, strerror(errno));
	if (flock(m->pid_fd, LOCK_EX | LOCK_NB) == -1) {
		n = (int)read(m->pid_fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_fatal("another ternd (pid %s) is running with run_dir %s",
		    buf[0] ? buf : "?", m->cfg->server.run_dir);
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(m->pid_fd, 0) == -1 || write(m->pid_fd, buf, (size_t)n) != n)
		log_fatal("write %s: %s", m->pid_path, strerror(errno));
}

static void
daemonize(void)
{
	pid_t pid = fork();
	int null;

	if (pid == -1)
		log_fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	null = open("/dev/null", O_RDWR);
	if (null != -1) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (log_is_verbose() == false)
			dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
}

/* ---- signal handlers ---- */

static void
on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;

	(void)sig;
	(void)what;
	supervisor_reap(m->sv);
	if (m->stopping && supervisor_children(m->sv) == 0)
		event_base_loopexit(m->base, NULL);
}

static void
on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;

	(void)fd;
	(void)what;
	supervisor_kill_all(m->sv);
}

static void
on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	struct timeval tv = { m->cfg->server.shutdown_timeout, 0 };
	/* The front ends get half, the back ends at least the other half. */
	struct timeval half = { m->cfg->server.shutdown_timeout / 2,
	    (m->cfg->server.shutdown_timeout % 2) * 500000 };

	(void)what;
	if (m->stopping)
		return;
	m->stopping = true;
	log_info("terminating on signal %d", (int)sig);
	notify_systemd("STOPPING=1");
	supervisor_stop(m->sv, &half);
	if (supervisor_children(m->sv) == 0) {
		event_base_loopexit(m->base, NULL);
		return;
	}
	m->ev_stop_timeout = evtimer_new(m->base, on_stop_timeout, m);
	evtimer_add(m->ev_stop_timeout, &tv);
}

/* Settings the running daemons and sockets depend on need a restart. */
static const char *
reload_blocker(const struct tern_config *old, const struct tern_config *new)
{
	if (strcmp(old->server.run_dir, new->server.run_dir) != 0)
		return "run_dir";
	if (strcmp(old->server.queue_dir, new->server.queue_dir) != 0)
		return "queue_dir";
	if (strcmp(old->server.user, new->server.user) != 0)
		return "user";
	return NULL;
}

static void
on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	struct tern_config *cfg;
	const char *blocker;

	(void)sig;
	(void)what;
	if (m->stopping)
		return;
	log_info("reloading %s", m->cfg->path);
	notify_systemd("RELOADING=1");
	cfg = load_config(m->cfg->path);
	if (cfg == NULL) {
		log_warn("reload failed: the configuration has errors; keeping the "
		    "running configuration");
	} else if ((blocker = reload_blocker(m->cfg, cfg)) != NULL) {
		log_warn("reload failed: changing %s needs a restart of ternd", blocker);
		config_free(cfg);
	} else if (supervisor_bind_listeners(m->sv, cfg) == -1) {
		log_warn("reload failed: cannot bind the new listeners; keeping the "
		    "running configuration");
		config_free(cfg);
	} else {
		supervisor_reload(m->sv, cfg);
		config_free(m->cfg);
		m->cfg = cfg;
		log_info("reload complete");
	}
	notify_systemd("READY=1");
}

int
main(int argc, char **argv)
{
	struct master m;
	const char *config_path = NULL;
	bool foreground = false, verbose = false;
	int ch;

	memset(&m, 0, sizeof(m));
	log_init("master", LOG_TARGET_STDERR, false);
	while ((ch = getopt(argc, argv, "c:fvh")) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 'f': foreground = true; break;
		case 'v': verbose = true; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();

	/* Setup: the config must be valid before anything else happens. */
	m.cfg = load_config(config_default_path(config_path));
	if (m.cfg == NULL)
		log_fatal("%s has errors; not starting", config_default_path(config_path));
	log_init("master", foreground && m.cfg->server.log == LOG_TARGET_STDERR
	    ? LOG_TARGET_STDERR : m.cfg->server.log, verbose || m.cfg->server.verbose);
	signal(SIGPIPE, SIG_IGN);
	prepare_directories(m.cfg);
	if (!foreground)
		daemonize();
	lock_pid_file(&m);

	/* Sockets: bound here, as root if need be, and passed down. */
	m.base = event_base_new();
	if (m.base == NULL)
		log_fatal("event_base_new failed");
	m.sv = supervisor_new(m.base);

	/* Handlers before the first child, so no exit goes unseen, and before
	 * the ports open, so a client that sees the port and then stops us
	 * (Ctrl-C, SIGTERM) gets a clean stop. */
	event_add(evsignal_new(m.base, SIGCHLD, on_sigchld, &m), NULL);
	event_add(evsignal_new(m.base, SIGTERM, on_sigterm, &m), NULL);
	event_add(evsignal_new(m.base, SIGINT, on_sigterm, &m), NULL);
	event_add(evsignal_new(m.base, SIGHUP, on_sighup, &m), NULL);

	if (supervisor_bind_listeners(m.sv, m.cfg) == -1 ||
	    supervisor_bind_unix(m.sv, m.cfg) == -1 ||
	    supervisor_bind_public(m.sv, m.cfg) == -1)
		log_fatal("cannot open the listening sockets");
	if (supervisor_make_jails(m.sv, m.cfg) == -1)
		log_fatal("cannot make the jails in %s/jail", m.cfg->server.run_dir);

	supervisor_start(m.sv, m.cfg);
	log_info("daemon started -- version %s, configuration %s", PACKAGE_VERSION,
	    m.cfg->path);
	notify_systemd("READY=1");

	event_base_dispatch(m.base);

	supervisor_free(m.sv);
	unlink(m.pid_path);
	free(m.pid_path);
	config_free(m.cfg);
	if (m.ev_stop_timeout != NULL)
		event_free(m.ev_stop_timeout);
	log_info("stopped");
	return 0;
}
