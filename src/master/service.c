/*
 * service.c - supervision of tern's daemons by ternd: the table of
 * services, starting each with the sockets it needs, reaping and logging
 * every exit, restarting with backoff and throttling a daemon that fails
 * at start. Runs in ternd.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "ipc.h"
#include "log.h"
#include "service.h"
#include "util.h"

/* A daemon that dies sooner than this after its start failed at start. */
#define QUICK_FAILURE_USEC	(10 * 1000000ull)
#define THROTTLE_MAX_SEC	60

/* [delivery] agents: the size of the pool of delivery agents. */
static unsigned
smtp_instances(const struct tern_config *cfg)
{
	return cfg->delivery.agents;
}

/*
 * Every daemon tern runs. Order is start order: a service comes up after
 * the services it talks to, though clients reconnect anyway. The front
 * ends stop first (supervisor_stop). tern-bounce feeds cleanup too, but
 * only with what qmgr hands it, so it stops with the back ends.
 */
static const struct service_def service_defs[] = {
	{ "signer", "signer", false, false, NULL, false },
	{ "cleanup", "cleanup", false, false, NULL, false },
	{ "smtpd", NULL, true, false, NULL, true },
	{ "qmgr", "qmgr", false, true, NULL, false },
	{ "bounce", NULL, false, true, NULL, false },
	{ "smtp", NULL, false, false, smtp_instances, false },
	{ "pickup", NULL, false, true, NULL, true },
};

/*
 * The sockets any local user may connect to, in run_dir/public (0755):
 * bound by ternd with mode 0666 and passed as "public:NAME" to the
 * service that serves them, which must treat every peer as untrusted
 * (its identity is the kernel's SO_PEERCRED, nothing it says).
 */
static const struct {
	const char *service;
	const char *name;
} public_sockets[] = {
	{ "cleanup", "sendmail" },	/* the sendmail command (sendmail(1)) */
};

/*
 * The services that chroot (as root) into a jail of their own,
 * run_dir/jail/NAME, and the private sockets each may reach from there.
 * The jail holds private/SOCKET and nothing else: a daemon that parses
 * network input must not reach tern-qmgr or tern-signer. private/SOCKET
 * is a listening socket of its own, bound there by ternd and passed to
 * the service SOCKET as "unix:SOCKET-NAME" (tern-cleanup gets
 * "unix:cleanup-smtpd"), so that the server knows which clients came
 * through the jail and what they may claim (tern-cleanup(8)). The daemon
 * asks for the chroot itself (chroot_run_dir in its daemon_spec).
 */
#define JAIL_SOCKETS_MAX	4
static const struct {
	const char *service;
	const char *sockets[JAIL_SOCKETS_MAX];	/* NULL-terminated */
} jails[] = {
	{ "signer", { NULL } },			/* serves its socket, reaches none */
	{ "smtpd", { "cleanup", NULL } },	/* network input: cleanup only */
};

struct instance {
	struct supervisor *sv;
	const struct service_def *def;
	unsigned slot;			/* which of several, from 0 */
	pid_t pid;			/* 0: not running */
	uint64_t started;		/* monotonic usec */
	unsigned failures;		/* quick failures in a row */
	struct event *ev_start;		/* delayed (re)start */
	bool retiring;			/* replaced by a reload: no restart */
	bool waiting;			/* singleton waiting for its predecessor */
};

struct supervisor {
	struct event_base *base;
	const struct tern_config *cfg;
	struct master_socket *sockets;
	size_t n_sockets;
	struct instance **inst;
	size_t n_inst;
	bool stopping;
	bool back_ends_stopping;	/* the second step of a stop */
	struct event *ev_front_end_timeout;
};

static void instance_spawn(struct instance *in);
static void instance_schedule_restart(struct instance *in);
static size_t front_ends_running(const struct supervisor *sv);
static void stop_back_ends(struct supervisor *sv);

struct supervisor *
supervisor_new(struct event_base *base)
{
	struct supervisor *sv = xcalloc(1, sizeof(*sv));

	sv->base = base;
	return sv;
}

size_t
supervisor_children(const struct supervisor *sv)
{
	size_t n = 0;

	for (size_t i = 0; i < sv->n_inst; i++)
		if (sv->inst[i]->pid > 0)
			n++;
	return n;
}

/* ---- sockets ---- */

static int
bind_tcp(const struct cfg_sockaddr *addr)
{
	int fd, on = 1;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (addr->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) == -1 ||
	    listen(fd, 1024) == -1) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
supervisor_bind_listeners(struct supervisor *sv, const struct tern_config *cfg)
{
	struct master_socket *next = NULL;
	size_t n_next = 0;

	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		struct master_socket ms;

		memset(&ms, 0, sizeof(ms));
		ms.name = xasprintf("listen:%s", l->name);
		ms.addr = l->address;
		ms.fd = -1;
		/* An address already bound keeps its socket: no gap on reload. */
		for (size_t j = 0; j < sv->n_sockets; j++) {
			struct master_socket *old = &sv->sockets[j];

			if (old->fd != -1 && strncmp(old->name, "listen:", 7) == 0 &&
			    old->addr.len == l->address.len &&
			    memcmp(&old->addr.ss, &l->address.ss, l->address.len) == 0) {
				ms.fd = old->fd;
				old->fd = -1;
				break;
			}
		}
		if (ms.fd == -1 && (ms.fd = bind_tcp(&l->address)) == -1) {
			log_warn("cannot listen on %s ([listen %s]): %s",
			    l->address.text, l->name, strerror(errno));
			free(ms.name);
			/* Put back what was taken over; close what is new. */
			for (size_t k = 0; k < n_next; k++) {
				bool reused = false;

				for (size_t j = 0; j < sv->n_sockets; j++)
					if (sv->sockets[j].fd == -1 &&
					    strncmp(sv->sockets[j].name, "listen:", 7) == 0 &&
					    sv->sockets[j].addr.len == next[k].addr.len &&
					    memcmp(&sv->sockets[j].addr.ss, &next[k].addr.ss,
					    next[k].addr.len) == 0) {
						sv->sockets[j].fd = next[k].fd;
						reused = true;
						break;
					}
				if (!reused)
					close(next[k].fd);
				free(next[k].name);
			}
			free(next);
			return -1;
		}
		log_info("listening on %s for [listen %s]", l->address.text, l->name);
		next = xreallocarray(next, n_next + 1, sizeof(*next));
		next[n_next++] = ms;
	}
	/* Keep the Unix sockets, close the listeners no longer configured. */
	for (size_t j = 0; j < sv->n_sockets; j++) {
		struct master_socket *old = &sv->sockets[j];

		if (strncmp(old->name, "listen:", 7) != 0) {
			next = xreallocarray(next, n_next + 1, sizeof(*next));
			next[n_next++] = *old;
			continue;
		}
		if (old->fd != -1) {
			log_info("no longer listening on %s", old->addr.text);
			close(old->fd);
		}
		free(old->name);
	}
	free(sv->sockets);
	sv->sockets = next;
	sv->n_sockets = n_next;
	return 0;
}

/* Binds the Unix socket at path (mode 0666: its directory decides who
 * may connect) and keeps it as name (taken). */
static int
supervisor_add_unix(struct supervisor *sv, const char *path, char *name)
{
	struct master_socket ms;
	struct stat sb;

	memset(&ms, 0, sizeof(ms));
	ms.fd = ipc_listen_unix(path, 0666);
	if (ms.fd == -1) {
		log_warn("cannot listen on %s: %s", path, strerror(errno));
		free(name);
		return -1;
	}
	fd_set_nonblock(ms.fd);
	if (lstat(path, &sb) == -1) {
		log_warn("cannot check %s: %s", path, strerror(errno));
		close(ms.fd);
		free(name);
		return -1;
	}
	ms.dev = sb.st_dev;
	ms.ino = sb.st_ino;
	ms.name = name;
	ms.path = xstrdup(path);
	sv->sockets = xreallocarray(sv->sockets, sv->n_sockets + 1,
	    sizeof(*sv->sockets));
	sv->sockets[sv->n_sockets++] = ms;
	return 0;
}

int
supervisor_bind_unix(struct supervisor *sv, const struct tern_config *cfg)
{
	for (size_t i = 0; i < TERN_ARRAY_LEN(service_defs); i++) {
		const struct service_def *def = &service_defs[i];
		char path[4096];

		if (def->unix_socket == NULL)
			continue;
		/* The private directory (0700) is what keeps others out. */
		snprintf(path, sizeof(path), "%s/private/%s", cfg->server.run_dir,
		    def->unix_socket);
		if (supervisor_add_unix(sv, path,
		    xasprintf("unix:%s", def->unix_socket)) == -1)
			return -1;
	}
	return 0;
}

int
supervisor_bind_public(struct supervisor *sv, const struct tern_config *cfg)
{
	for (size_t i = 0; i < TERN_ARRAY_LEN(public_sockets); i++) {
		char path[4096];

		/* Anyone may connect: the server asks the kernel who they are. */
		snprintf(path, sizeof(path), "%s/public/%s", cfg->server.run_dir,
		    public_sockets[i].name);
		if (supervisor_add_unix(sv, path,
		    xasprintf("public:%s", public_sockets[i].name)) == -1)
			return -1;
	}
	return 0;
}

/* ---- jails ---- */

static int
jail_of(const char *service)
{
	for (size_t i = 0; i < TERN_ARRAY_LEN(jails); i++)
		if (strcmp(jails[i].service, service) == 0)
			return (int)i;
	return -1;
}

/*
 * Makes path a directory of uid:gid with mode, and refuses anything else
 * in its place (a symbolic link). Its parent is root's (or ours), so
 * nobody else can swap it between the check and the chown.
 */
static int
jail_dir(const char *path, unsigned mode, uid_t uid, gid_t gid)
{
	struct stat sb;

	if (mkdir(path, (mode_t)mode) == -1 && errno != EEXIST)
		return -1;
	if (lstat(path, &sb) == -1)
		return -1;
	if (!S_ISDIR(sb.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	if ((sb.st_uid != uid || sb.st_gid != gid) && chown(path, uid, gid) == -1)
		return -1;
	return chmod(path, (mode_t)mode);
}

/* True when a service serves the socket name ("cleanup"). */
static bool
is_served(const char *name)
{
	for (size_t i = 0; i < TERN_ARRAY_LEN(service_defs); i++)
		if (service_defs[i].unix_socket != NULL &&
		    strcmp(service_defs[i].unix_socket, name) == 0)
			return true;
	return false;
}

/* The name jail j's socket k is passed under: "unix:cleanup-smtpd". */
static char *
jail_socket_name(size_t j, size_t k)
{
	return xasprintf("unix:%s-%s", jails[j].sockets[k], jails[j].service);
}

static const struct master_socket *
find_socket(const struct supervisor *sv, const char *name)
{
	for (size_t i = 0; i < sv->n_sockets; i++)
		if (strcmp(sv->sockets[i].name, name) == 0)
			return &sv->sockets[i];
	return NULL;
}

static bool
is_bound_file(const struct stat *sb, const struct master_socket *ms)
{
	return S_ISSOCK(sb->st_mode) && sb->st_dev == ms->dev &&
	    sb->st_ino == ms->ino;
}

/*
 * Checks that path is the socket ternd bound there. Whatever was put in
 * its place since (a link to another socket) is removed, never served
 * to the jailed daemon, and the jail is refused until ternd restarts
 * and binds the socket again.
 */
static int
jail_check_socket(const struct master_socket *ms, const char *path)
{
	struct stat sb;

	if (lstat(path, &sb) == -1) {
		log_warn("cannot check %s: %s (ternd binds it again when "
		    "restarted)", path, strerror(errno));
		return -1;
	}
	if (is_bound_file(&sb, ms))
		return 0;
	log_warn("%s is not the socket ternd bound: removing it", path);
	if (unlink(path) == -1)
		log_warn("cannot remove %s: %s", path, strerror(errno));
	return -1;
}

static bool
is_jail_socket(size_t j, const char *name)
{
	for (size_t k = 0; k < JAIL_SOCKETS_MAX && jails[j].sockets[k]; k++)
		if (strcmp(jails[j].sockets[k], name) == 0)
			return true;
	return false;
}

/* Whatever else is in a jail's private/ goes (an older ternd's link). */
static void
jail_remove_others(size_t j, const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *de;

	if (dp == NULL)
		return;
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    is_jail_socket(j, de->d_name))
			continue;
		if (unlinkat(dirfd(dp), de->d_name, 0) == -1)
			log_warn("cannot remove %s/%s from the jail of %s: %s", dir,
			    de->d_name, jails[j].service, strerror(errno));
		else
			log_info("removed %s/%s: not a socket tern-%s may reach",
			    dir, de->d_name, jails[j].service);
	}
	closedir(dp);
}

/*
 * Makes or checks jail j: run_dir/jail and run_dir/jail/NAME belong to
 * root (mode 0755), NAME/private to root and tern's group (mode 0710:
 * the daemon may pass, not change it; other users may not enter) and
 * holds only the sockets the service may reach, bound there by ternd.
 * With bind, the sockets are bound now (at start); else each must be
 * the one bound then.
 */
static int
jail_prepare(struct supervisor *sv, const struct tern_config *cfg, size_t j,
    bool bind)
{
	const char *run_dir = cfg->server.run_dir, *service = jails[j].service;
	uid_t uid = geteuid();
	gid_t gid = getegid(), group = getegid();
	char *dirs[3];
	int rc = 0;

	if (uid == 0) {
		struct passwd *pw = getpwnam(cfg->server.user);

		if (pw == NULL) {
			log_warn("user '%s' (server.user) does not exist",
			    cfg->server.user);
			return -1;
		}
		gid = 0;
		group = pw->pw_gid;
	}
	dirs[0] = xasprintf("%s/jail", run_dir);
	dirs[1] = xasprintf("%s/jail/%s", run_dir, service);
	dirs[2] = xasprintf("%s/jail/%s/private", run_dir, service);
	for (size_t i = 0; i < 3 && rc == 0; i++) {
		if (i == 2 && jails[j].sockets[0] == NULL)
			break;
		if (jail_dir(dirs[i], i == 2 ? 0710 : 0755, uid,
		    i == 2 ? group : gid) == -1) {
			log_warn("cannot make %s: %s", dirs[i], strerror(errno));
			rc = -1;
		}
	}
	if (rc == 0 && jails[j].sockets[0] != NULL)
		jail_remove_others(j, dirs[2]);
	for (size_t k = 0; rc == 0 && k < JAIL_SOCKETS_MAX &&
	    jails[j].sockets[k] != NULL; k++) {
		char *name = jail_socket_name(j, k);
		char *path = xasprintf("%s/%s", dirs[2], jails[j].sockets[k]);
		const struct master_socket *ms = find_socket(sv, name);

		if (ms == NULL && bind && !is_served(jails[j].sockets[k])) {
			log_warn("the jail of %s names the socket %s, which no "
			    "service serves", service, jails[j].sockets[k]);
			rc = -1;
		} else if (ms == NULL && bind)
			rc = supervisor_add_unix(sv, path, xstrdup(name));
		else if (ms == NULL || ms->fd == -1) {
			log_warn("the socket %s of the jail of %s is not bound",
			    path, service);
			rc = -1;
		} else
			rc = jail_check_socket(ms, path);
		free(name);
		free(path);
	}
	for (size_t i = 0; i < 3; i++)
		free(dirs[i]);
	return rc;
}

int
supervisor_make_jails(struct supervisor *sv, const struct tern_config *cfg)
{
	for (size_t j = 0; j < TERN_ARRAY_LEN(jails); j++)
		if (jail_prepare(sv, cfg, j, true) == -1)
			return -1;
	return 0;
}

/* ---- instances ---- */

static void
instance_start_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	instance_spawn(arg);
}

static struct instance *
instance_add(struct supervisor *sv, const struct service_def *def, unsigned slot)
{
	struct instance *in = xcalloc(1, sizeof(*in));

	in->sv = sv;
	in->def = def;
	in->slot = slot;
	in->ev_start = evtimer_new(sv->base, instance_start_cb, in);
	if (in->ev_start == NULL)
		log_fatal("evtimer_new failed");
	sv->inst = xreallocarray(sv->inst, sv->n_inst + 1, sizeof(*sv->inst));
	sv->inst[sv->n_inst++] = in;
	return in;
}

static void
instance_remove(struct supervisor *sv, struct instance *in)
{
	for (size_t i = 0; i < sv->n_inst; i++)
		if (sv->inst[i] == in) {
			memmove(&sv->inst[i], &sv->inst[i + 1],
			    (sv->n_inst - i - 1) * sizeof(*sv->inst));
			sv->n_inst--;
			break;
		}
	event_free(in->ev_start);
	free(in);
}

/* Which master sockets a service gets. */
static bool
is_socket_for(const struct service_def *def, const struct master_socket *ms)
{
	if (ms->fd == -1)
		return false;
	if (strncmp(ms->name, "listen:", 7) == 0)
		return def->tcp_listeners;
	if (strncmp(ms->name, "public:", 7) == 0) {
		for (size_t i = 0; i < TERN_ARRAY_LEN(public_sockets); i++)
			if (strcmp(public_sockets[i].service, def->name) == 0 &&
			    strcmp(public_sockets[i].name, ms->name + 7) == 0)
				return true;
		return false;
	}
	if (def->unix_socket == NULL || strncmp(ms->name, "unix:", 5) != 0)
		return false;
	if (strcmp(ms->name + 5, def->unix_socket) == 0)
		return true;
	/* Its socket in a jail: "unix:cleanup-smtpd" goes to cleanup. */
	for (size_t j = 0; j < TERN_ARRAY_LEN(jails); j++)
		for (size_t k = 0; k < JAIL_SOCKETS_MAX && jails[j].sockets[k];
		    k++) {
			char *name = jail_socket_name(j, k);
			bool match = strcmp(jails[j].sockets[k],
			    def->unix_socket) == 0 && strcmp(ms->name, name) == 0;

			free(name);
			if (match)
				return true;
		}
	return false;
}

static void
instance_spawn(struct instance *in)
{
	struct supervisor *sv = in->sv;
	const struct tern_config *cfg = sv->cfg;
	char *path, *fds, master[32];
	sigset_t all, saved;
	int jail = jail_of(in->def->name);
	pid_t pid;

	/* The jail is checked at every start: the daemon finds there the
	 * sockets ternd bound, or does not start. */
	if (jail != -1 && jail_prepare(sv, cfg, (size_t)jail, false) == -1) {
		log_warn("not starting tern-%s without its jail", in->def->name);
		in->started = tern_monotonic_usec();
		instance_schedule_restart(in);
		return;
	}
	fds = xstrdup("");
	path = xasprintf("%s/tern-%s", cfg->server.daemon_dir, in->def->name);
	for (size_t i = 0; i < sv->n_sockets; i++) {
		char *t;

		if (!is_socket_for(in->def, &sv->sockets[i]))
			continue;
		t = xasprintf("%s%s%s=%d", fds, *fds ? " " : "",
		    sv->sockets[i].name, sv->sockets[i].fd);
		free(fds);
		fds = t;
	}
	snprintf(master, sizeof(master), "%ld", (long)getpid());

	/*
	 * Between fork and exec the child still has libevent's handlers: a
	 * SIGTERM then would be swallowed. Block everything across the fork;
	 * the child resets every handler before it unblocks, so a signal sent
	 * that early takes its default effect.
	 */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &saved);
	pid = fork();
	if (pid > 0 || pid == -1)
		sigprocmask(SIG_SETMASK, &saved, NULL);
	if (pid == -1) {
		log_warn("fork for %s: %s; retrying in 1s", path, strerror(errno));
		struct timeval tv = { 1, 0 };
		evtimer_add(in->ev_start, &tv);
		free(path);
		free(fds);
		return;
	}
	if (pid == 0) {
		char *argv[5];
		int argc = 0;

		for (size_t i = 0; i < sv->n_sockets; i++)
			if (is_socket_for(in->def, &sv->sockets[i]))
				fd_set_cloexec(sv->sockets[i].fd, false);
		setenv(DAEMON_ENV_FDS, fds, 1);
		setenv(DAEMON_ENV_MASTER, master, 1);
		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		argv[argc++] = path;
		argv[argc++] = "-c";
		argv[argc++] = cfg->path;
		if (log_is_verbose())
			argv[argc++] = "-v";
		argv[argc] = NULL;
		execv(path, argv);
		log_warn("cannot run %s: %s", path, strerror(errno));
		_exit(127);
	}
	in->pid = pid;
	in->started = tern_monotonic_usec();
	in->waiting = false;
	log_debug("started %s pid %ld", path, (long)pid);
	free(path);
	free(fds);
}

void
supervisor_start(struct supervisor *sv, const struct tern_config *cfg)
{
	sv->cfg = cfg;
	for (size_t i = 0; i < TERN_ARRAY_LEN(service_defs); i++) {
		const struct service_def *def = &service_defs[i];
		unsigned n = def->instances ? def->instances(cfg) : 1;

		for (unsigned slot = 0; slot < n; slot++)
			instance_spawn(instance_add(sv, def, slot));
	}
}

/* Logs how a child ended, in Postfix's words. */
static void
log_child_exit(const struct instance *in, pid_t pid, int status)
{
	const char *name = in->def->name;
	bool expected = in->retiring || (in->sv->stopping &&
	    (in->def->front_end || in->sv->back_ends_stopping));

	if (WIFEXITED(status)) {
		if (WEXITSTATUS(status) == 0 && expected)
			log_debug("process tern-%s pid %ld exited", name, (long)pid);
		else
			log_warn("process tern-%s pid %ld exit status %d", name,
			    (long)pid, WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		log_warn("process tern-%s pid %ld killed by signal %d (%s)", name,
		    (long)pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
	}
}

/* Restarts a daemon that ended on its own: at once after a long run,
 * with a growing delay when it keeps failing at start. */
static void
instance_schedule_restart(struct instance *in)
{
	uint64_t ran = tern_monotonic_usec() - in->started;
	unsigned delay = 0;
	struct timeval tv;

	if (ran < QUICK_FAILURE_USEC) {
		in->failures++;
		delay = in->failures >= 7 ? THROTTLE_MAX_SEC : 1u << (in->failures - 1);
		if (delay > THROTTLE_MAX_SEC)
			delay = THROTTLE_MAX_SEC;
		log_warn("service %s failed %u time(s) in a row within %llus of its "
		    "start; throttling: next start in %us", in->def->name,
		    in->failures, (unsigned long long)(QUICK_FAILURE_USEC / 1000000),
		    delay);
	} else {
		in->failures = 0;
	}
	tv.tv_sec = delay;
	tv.tv_usec = 0;
	evtimer_add(in->ev_start, &tv);
}

void
supervisor_reap(struct supervisor *sv)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct instance *in = NULL;

		for (size_t i = 0; i < sv->n_inst; i++)
			if (sv->inst[i]->pid == pid)
				in = sv->inst[i];
		if (in == NULL)
			continue;
		in->pid = 0;
		log_child_exit(in, pid, status);
		/* While the front ends drain, the back ends they need are
		 * still restarted. */
		if (in->retiring || (sv->stopping && (in->def->front_end ||
		    sv->back_ends_stopping))) {
			const struct service_def *def = in->def;

			instance_remove(sv, in);
			/* A singleton's successor waited for this exit. */
			for (size_t i = 0; i < sv->n_inst && !sv->stopping; i++)
				if (sv->inst[i]->def == def && sv->inst[i]->waiting)
					instance_spawn(sv->inst[i]);
			continue;
		}
		instance_schedule_restart(in);
	}
	if (sv->stopping && !sv->back_ends_stopping &&
	    front_ends_running(sv) == 0)
		stop_back_ends(sv);
}

void
supervisor_reload(struct supervisor *sv, const struct tern_config *cfg)
{
	size_t n_old = sv->n_inst;

	sv->cfg = cfg;
	for (size_t i = 0; i < n_old; i++) {
		struct instance *in = sv->inst[i];

		in->retiring = true;
		evtimer_del(in->ev_start);
		if (in->pid > 0)
			kill(in->pid, SIGTERM);
	}
	for (size_t i = 0; i < TERN_ARRAY_LEN(service_defs); i++) {
		const struct service_def *def = &service_defs[i];
		unsigned n = def->instances ? def->instances(cfg) : 1;

		for (unsigned slot = 0; slot < n; slot++) {
			struct instance *in = instance_add(sv, def, slot);
			bool predecessor = false;

			for (size_t k = 0; k < n_old && def->singleton; k++)
				if (sv->inst[k]->def == def && sv->inst[k]->pid > 0)
					predecessor = true;
			if (predecessor)
				in->waiting = true;
			else
				instance_spawn(in);
		}
	}
	/* Retiring instances that were not running go away now. */
	for (size_t i = 0; i < sv->n_inst;) {
		if (sv->inst[i]->retiring && sv->inst[i]->pid == 0)
			instance_remove(sv, sv->inst[i]);
		else
			i++;
	}
}

/* Sends SIGTERM to the running instances of one kind; the others,
 * waiting for a (re)start, go away. */
static void
stop_instances(struct supervisor *sv, bool front_end)
{
	for (size_t i = 0; i < sv->n_inst;) {
		struct instance *in = sv->inst[i];

		if (in->def->front_end != front_end) {
			i++;
			continue;
		}
		evtimer_del(in->ev_start);
		if (in->pid > 0) {
			kill(in->pid, SIGTERM);
			i++;
		} else {
			instance_remove(sv, in);
		}
	}
}

static size_t
front_ends_running(const struct supervisor *sv)
{
	size_t n = 0;

	for (size_t i = 0; i < sv->n_inst; i++)
		if (sv->inst[i]->def->front_end && sv->inst[i]->pid > 0)
			n++;
	return n;
}

/* The second step: nothing feeds cleanup any more. */
static void
stop_back_ends(struct supervisor *sv)
{
	sv->back_ends_stopping = true;
	if (sv->ev_front_end_timeout != NULL)
		evtimer_del(sv->ev_front_end_timeout);
	stop_instances(sv, false);
}

static void
front_end_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *sv = arg;

	(void)fd;
	(void)what;
	/* What they had not finished was never acknowledged. */
	for (size_t i = 0; i < sv->n_inst; i++)
		if (sv->inst[i]->def->front_end && sv->inst[i]->pid > 0) {
			log_warn("process tern-%s pid %ld did not finish in time; "
			    "killing it", sv->inst[i]->def->name,
			    (long)sv->inst[i]->pid);
			kill(sv->inst[i]->pid, SIGKILL);
		}
	stop_back_ends(sv);
}

void
supervisor_stop(struct supervisor *sv, const struct timeval *front_end_timeout)
{
	sv->stopping = true;
	/*
	 * Stop accepting: the daemons close their copies as they drain. A
	 * public socket closes too, so that a local client is refused at
	 * once (sendmail then uses the maildrop) instead of waiting in the
	 * backlog for a daemon that no longer accepts.
	 */
	for (size_t i = 0; i < sv->n_sockets; i++) {
		if (sv->sockets[i].fd != -1 &&
		    (strncmp(sv->sockets[i].name, "listen:", 7) == 0 ||
		    strncmp(sv->sockets[i].name, "public:", 7) == 0)) {
			close(sv->sockets[i].fd);
			sv->sockets[i].fd = -1;
		}
	}
	/*
	 * Front ends first: their open transactions finish with cleanup,
	 * signer and qmgr still there. The back ends get the rest of
	 * shutdown_timeout.
	 */
	stop_instances(sv, true);
	if (front_ends_running(sv) == 0) {
		stop_back_ends(sv);
		return;
	}
	sv->ev_front_end_timeout = evtimer_new(sv->base, front_end_timeout_cb, sv);
	if (sv->ev_front_end_timeout == NULL)
		log_fatal("evtimer_new failed");
	evtimer_add(sv->ev_front_end_timeout, front_end_timeout);
}

void
supervisor_kill_all(struct supervisor *sv)
{
	for (size_t i = 0; i < sv->n_inst; i++)
		if (sv->inst[i]->pid > 0) {
			log_warn("process tern-%s pid %ld did not finish in time; killing it",
			    sv->inst[i]->def->name, (long)sv->inst[i]->pid);
			kill(sv->inst[i]->pid, SIGKILL);
		}
}

void
supervisor_free(struct supervisor *sv)
{
	for (size_t i = 0; i < sv->n_sockets; i++) {
		if (sv->sockets[i].fd != -1)
			close(sv->sockets[i].fd);
		/* The Unix socket files go with it: a client is refused at
		 * once, not left to wait (tern-smtpd's in its jail too). */
		if (sv->sockets[i].path != NULL) {
			unlink(sv->sockets[i].path);
			free(sv->sockets[i].path);
		}
		free(sv->sockets[i].name);
	}
	free(sv->sockets);
	while (sv->n_inst > 0)
		instance_remove(sv, sv->inst[0]);
	if (sv->ev_front_end_timeout != NULL)
		event_free(sv->ev_front_end_timeout);
	free(sv->inst);
	free(sv);
}
