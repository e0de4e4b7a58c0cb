/*
 * pickup.c - tern-pickup: feeds the maildrop (messages the sendmail
 * command kept while the daemons were down) to tern-cleanup, and removes
 * each file only after cleanup answered 2xx for it, i.e. after the
 * durable commit. Who sent a file is its owner (st_uid), passed to
 * cleanup as the auth user "uid=N user=NAME" with CLEANUP_SOURCE_SENDMAIL.
 * A file that cannot be parsed, or that cleanup refuses for good, is
 * moved to queue_dir/maildrop.bad and logged: never silently dropped.
 *
 * Runs as tern's user (server.user), not chrooted (it reads queue_dir).
 * As root it first makes queue_dir/maildrop owned by that user and group
 * tern-drop, mode 1770 (see sendmail(1)). A timer scans the directory
 * every second. Each file's owner is named off the loop (user_lookup.h:
 * getpwuid_r may hang on a directory service, and must hold up only that
 * file); then the file is submitted with a short blocking exchange on
 * the local cleanup socket, which is this daemon's only work.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "ipc.h"
#include "log.h"
#include "peer_proof.h"
#include "maildrop.h"
#include "peercred.h"
#include "submit.h"
#include "user_lookup.h"
#include "util.h"

#define PICKUP_INTERVAL_SEC	1
#define PICKUP_BATCH		100	/* files per scan */
#define PICKUP_TIMEOUT_MS	(60 * 1000)

/* A maildrop file whose owner is being named. */
struct pending {
	char *name;
	struct peer_identity owner;
	struct user_lookup_req lookup;
	struct pending *next;
};

struct pickup {
	struct daemon *d;
	char *dir;			/* queue_dir/maildrop */
	char *bad_dir;			/* queue_dir/maildrop.bad */
	char cleanup_path[4096];
	struct submit_conn *conn;
	struct event *ev_scan;
	bool warned_down;
	struct user_lookup *users;
	struct pending *pending;	/* files being named, at most a batch */
	size_t n_pending;
	bool held_back;			/* cleanup unreachable: wait for a scan */
};

static struct pickup pickup;

/* As root: the maildrop belongs to tern's user and group tern-drop. */
static void
pickup_open_privileged(struct daemon *d)
{
	const struct tern_config *cfg = d->cfg;
	char *dir = xasprintf("%s/maildrop", cfg->server.queue_dir);
	struct group *gr;
	struct passwd *pw;

	if (mkdir_p(cfg->server.queue_dir, 0700) == -1 ||
	    (mkdir(dir, 0700) == -1 && errno != EEXIST))
		log_fatal("cannot create %s: %s", dir, strerror(errno));
	if (geteuid() == 0) {
		pw = getpwnam(cfg->server.user);
		gr = getgrnam(MAILDROP_GROUP);
		if (pw == NULL)
			log_fatal("user '%s' (server.user) does not exist",
			    cfg->server.user);
		/* As ternd does: the queue belongs to tern's user. With the
		 * group, users reach the maildrop through queue_dir (0711:
		 * enter, not list; the store's files are 0600). */
		if (set_owner_mode(cfg->server.queue_dir, pw->pw_uid, pw->pw_gid,
		    gr ? 0711 : 0700) == -1)
			log_fatal("cannot set the owner and mode of %s: %s",
			    cfg->server.queue_dir, strerror(errno));
		/* Without the group only tern's user (and root) can drop. */
		if (set_owner_mode(dir, pw->pw_uid, gr ? gr->gr_gid : pw->pw_gid,
		    gr ? 01770 : 0700) == -1)
			log_fatal("cannot set the owner of %s: %s", dir,
			    strerror(errno));
	}
	free(dir);
}

/* Moves a file aside for the operator. */
static void
pickup_quarantine(const char *name, const char *why)
{
	char *from = xasprintf("%s/%s", pickup.dir, name);
	char *to = xasprintf("%s/%s", pickup.bad_dir, name);

	if (mkdir(pickup.bad_dir, 0700) == -1 && errno != EEXIST)
		log_warn("cannot create %s: %s", pickup.bad_dir, strerror(errno));
	if (rename(from, to) == -1)
		log_warn("maildrop %s: %s; and it cannot be moved to %s: %s; "
		    "left in place", name, why, pickup.bad_dir, strerror(errno));
	else
		log_warn("maildrop %s: %s; moved to %s", name, why, to);
	free(from);
	free(to);
}

/* Reads a whole maildrop file (regular, one link, not too large) that
 * still belongs to owner; NULL with *why NULL: gone, or not the file
 * named (the next scan takes it again). */
static char *
pickup_read(int dfd, const char *name, size_t *len, uid_t owner,
    const char **why)
{
	struct stat sb;
	char *buf;
	size_t off = 0;
	int fd;

	*why = NULL;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1) {
		if (errno != ENOENT)
			*why = "cannot be opened";
		return NULL;
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
		*why = "not a regular file with one link";
		close(fd);
		return NULL;
	}
	if ((uint64_t)sb.st_size > pickup.d->cfg->server.message_size_limit +
	    MAILDROP_MAX_RCPTS * (uint64_t)MAILDROP_LINE_MAX) {
		*why = "larger than message_size_limit";
		close(fd);
		return NULL;
	}
	if (sb.st_uid != owner) {
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)sb.st_size + 1);
	while (off < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + off, (size_t)sb.st_size - off);

		if (r <= 0) {
			if (r == -1 && errno == EINTR)
				continue;
			*why = "cannot be read";
			free(buf);
			close(fd);
			return NULL;
		}
		off += (size_t)r;
	}
	close(fd);
	*len = off;
	return buf;
}

/* Submits one file of a named owner; returns -1 when cleanup is
 * unreachable (the file waits for the next scan). */
static int
pickup_one(int dfd, const char *name, const struct peer_identity *who)
{
	struct maildrop_msg m;
	struct submit_result res;
	enum submit_outcome oc;
	char auth[128];
	const char *why;
	size_t len;
	char *buf;
	int proof;

	buf = pickup_read(dfd, name, &len, who->uid, &why);
	if (buf == NULL) {
		if (why != NULL)
			pickup_quarantine(name, why);
		return 0;
	}
	if (maildrop_parse(buf, len, &m, &why) == -1) {
		pickup_quarantine(name, why);
		free(buf);
		return 0;
	}
	if (pickup.conn == NULL) {
		pickup.conn = submit_connect(pickup.cleanup_path, "pickup",
		    PICKUP_TIMEOUT_MS);
		if (pickup.conn == NULL) {
			if (!pickup.warned_down)
				log_warn("cannot reach cleanup at %s: %s; the maildrop "
				    "waits", pickup.cleanup_path, strerror(errno));
			pickup.warned_down = true;
			maildrop_msg_free(&m);
			free(buf);
			return -1;
		}
		pickup.warned_down = false;
		/* tern-cleanup takes mail on its private socket only from
		 * who shows run_dir/private (peer_proof.h). */
		proof = peer_proof_open_private(pickup.d->cfg->server.run_dir);
		if (proof == -1)
			log_warn("%s/private: %s", pickup.d->cfg->server.run_dir,
			    strerror(errno));
		else
			submit_set_proof(pickup.conn, proof);
	}
	peercred_auth_text(who, auth, sizeof(auth));
	oc = submit_message(pickup.conn, CLEANUP_SOURCE_SENDMAIL, auth, &m, &res);
	switch (oc) {
	case SUBMIT_COMMITTED:
		/* Durably queued: only now may the file go. */
		if (unlinkat(dfd, name, 0) == -1)
			log_warn("maildrop %s: queued as %s but cannot be removed: "
			    "%s", name, res.end.qid, strerror(errno));
		log_info("%s: maildrop %s, %s, from=<%s>, nrcpt=%zu", res.end.qid,
		    name, auth, m.sender, res.n_accepted);
		break;
	case SUBMIT_REFUSED: {
		char *msg = xasprintf("refused by cleanup (%u %s %s)",
		    res.end.code ? res.end.code : res.begin.code >= 500 ?
		    res.begin.code : res.rcpt[0].code,
		    res.end.code ? res.end.status : res.begin.code >= 500 ?
		    res.begin.status : res.rcpt[0].status,
		    res.end.code ? res.end.text : res.begin.code >= 500 ?
		    res.begin.text : res.rcpt[0].text);

		pickup_quarantine(name, msg);
		free(msg);
		break;
	}
	case SUBMIT_TEMPFAIL:
		log_info("maildrop %s: cleanup cannot take it now; will retry", name);
		submit_result_free(&res);
		maildrop_msg_free(&m);
		free(buf);
		return -1;
	case SUBMIT_LOST:
		log_warn("maildrop %s: lost the connection to cleanup; will retry",
		    name);
		submit_close(pickup.conn);
		pickup.conn = NULL;
		submit_result_free(&res);
		maildrop_msg_free(&m);
		free(buf);
		return -1;
	}
	submit_result_free(&res);
	maildrop_msg_free(&m);
	free(buf);
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
is_pending(const char *name)
{
	for (struct pending *p = pickup.pending; p != NULL; p = p->next)
		if (strcmp(p->name, name) == 0)
			return true;
	return false;
}

/* In the loop: a file's owner is named; submit the file. */
static void
pickup_named(struct user_lookup_req *req)
{
	struct pending *p = req->arg, **pp;
	int dfd;

	for (pp = &pickup.pending; *pp != p; pp = &(*pp)->next)
		;
	*pp = p->next;
	pickup.n_pending--;
	dfd = open(pickup.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1)
		log_warn("cannot open %s: %s", pickup.dir, strerror(errno));
	else {
		/* Once cleanup cannot take one, the others wait (in place)
		 * for the next scan, as the rest of a scan did. */
		if (!pickup.held_back && pickup_one(dfd, p->name, &p->owner) == -1)
			pickup.held_back = true;
		close(dfd);
	}
	free(p->name);
	free(p);
}

/* Has the owner of a file named (pickup_named follows). */
static void
pickup_name_owner(int dfd, const char *name)
{
	struct pending *p;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1 && errno == ENOENT)
		return;
	if (fd == -1) {
		pickup_quarantine(name, "cannot be opened");
		return;
	}
	p = xcalloc(1, sizeof(*p));
	if (peercred_from_file(fd, &p->owner) == -1) {
		log_warn("maildrop %s: cannot learn its owner: %s; will retry",
		    name, strerror(errno));
		free(p);
		close(fd);
		return;
	}
	close(fd);
	p->name = xstrdup(name);
	p->next = pickup.pending;
	pickup.pending = p;
	pickup.n_pending++;
	user_lookup_submit(pickup.users, &p->lookup, &p->owner, p);
}

/* Takes up to PICKUP_BATCH files, oldest first, not already in hand. */
static void
pickup_scan(evutil_socket_t fd, short what, void *arg)
{
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	DIR *dir;
	int dfd;

	(void)fd;
	(void)what;
	(void)arg;
	dir = opendir(pickup.dir);
	if (dir == NULL) {
		log_warn("cannot read %s: %s", pickup.dir, strerror(errno));
		return;
	}
	while ((de = readdir(dir)) != NULL)
		if (is_maildrop_name(de->d_name)) {
			names = xreallocarray(names, n + 1, sizeof(*names));
			names[n++] = xstrdup(de->d_name);
		}
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	dfd = dirfd(dir);
	pickup.held_back = false;
	for (size_t i = 0; i < n && pickup.n_pending < PICKUP_BATCH; i++)
		if (!is_pending(names[i]))
			pickup_name_owner(dfd, names[i]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(dir);
}

static void
pickup_drain(struct daemon *d)
{
	event_del(pickup.ev_scan);
	daemon_exit(d);
}

static const struct daemon_spec pickup_spec = {
	.name = "pickup",
	.chroot_run_dir = false,
	.open_privileged = pickup_open_privileged,
	.drain = pickup_drain,
};

int
main(int argc, char **argv)
{
	struct daemon d;
	struct timeval tv = { PICKUP_INTERVAL_SEC, 0 };
	int rc;

	daemon_init(&d, &pickup_spec, argc, argv);
	pickup.d = &d;
	pickup.dir = xasprintf("%s/maildrop", d.cfg->server.queue_dir);
	pickup.bad_dir = xasprintf("%s/maildrop.bad", d.cfg->server.queue_dir);
	daemon_service_path(&d, "cleanup", pickup.cleanup_path,
	    sizeof(pickup.cleanup_path));
	pickup.users = user_lookup_new(d.base, pickup_named);

	pickup.ev_scan = event_new(d.base, -1, EV_PERSIST, pickup_scan, NULL);
	if (pickup.ev_scan == NULL)
		log_fatal("event_new failed");
	event_add(pickup.ev_scan, &tv);
	event_active(pickup.ev_scan, EV_TIMEOUT, 0);
	log_info("daemon started");

	rc = daemon_run(&d);
	/* Files still being named stay in the maildrop; a look-up thread
	 * may still write to them, so they are not freed. */
	submit_close(pickup.conn);
	event_free(pickup.ev_scan);
	free(pickup.dir);
	free(pickup.bad_dir);
	return rc;
}
