/*
 * auth.c - AUTH PLAIN and LOGIN for tern-smtpd against [auth] users_file.
 * The file is read once before the privilege drop (the daemon may be
 * chrooted later). crypt(3) is slow on purpose, so hashes are checked in
 * one worker thread and the answer comes back to the event loop through
 * an event; the loop never blocks. Runs in tern-smtpd, unprivileged.
 */
#include "autoconfig.h"

#include <crypt.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtpd.h"
#include "util.h"

#define FAILURE_DELAY_MAX	30

struct auth_job {
	struct session *s;		/* NULL once the session is gone */
	char *user;
	char *password;
	const char *hash;		/* a dummy one for an unknown user */
	bool ok;
	struct event *ev;
	struct auth_job *next;
};

static pthread_t worker;
static bool worker_started;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static struct auth_job *queue_head, **queue_tail = &queue_head;
/* Unknown users cost as much as known ones: no user enumeration by time. */
static char *dummy_hash;

void
auth_load_users(struct smtpd *sd)
{
	const char *path = sd->d.cfg->auth.users_file;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0;
	struct crypt_data cd;
	const char *h;
	FILE *f;

	if (path == NULL)
		return;
	f = fopen(path, "r");
	if (f == NULL)
		log_fatal("cannot read users_file %s: %s", path, strerror(errno));
	sd->users = xcalloc(1, sizeof(*sd->users));
	while ((len = getline(&line, &cap, f)) != -1) {
		char *colon;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		colon = strchr(line, ':');
		if (colon == NULL || colon == line || colon[1] == '\0') {
			log_warn("%s:%d: not name:hash, ignored", path, lineno);
			continue;
		}
		*colon = '\0';
		sd->users = xreallocarray(sd->users, sd->n_users + 1,
		    sizeof(*sd->users));
		sd->users[sd->n_users].name = xstrdup(line);
		sd->users[sd->n_users].hash = xstrdup(colon + 1);
		sd->n_users++;
	}
	free(line);
	fclose(f);
	memset(&cd, 0, sizeof(cd));
	h = crypt_r("tern-dummy-password", "$6$ternDummySalt$", &cd);
	dummy_hash = xstrdup(h != NULL ? h : "$6$ternDummySalt$x");
	log_debug("%zu AUTH users from %s", sd->n_users, path);
}

static void *
auth_worker(void *arg)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));

	(void)arg;
	for (;;) {
		struct auth_job *job;
		const char *h;

		pthread_mutex_lock(&queue_lock);
		while (queue_head == NULL)
			pthread_cond_wait(&queue_cond, &queue_lock);
		job = queue_head;
		queue_head = job->next;
		if (queue_head == NULL)
			queue_tail = &queue_head;
		pthread_mutex_unlock(&queue_lock);

		h = crypt_r(job->password, job->hash, cd);
		job->ok = h != NULL && h[0] != '*' && strcmp(h, job->hash) == 0 &&
		    job->hash != dummy_hash;
		explicit_bzero(job->password, strlen(job->password));
		event_active(job->ev, 0, 0);
	}
	return NULL;
}

static void
auth_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct auth_job *job = arg;

	(void)fd;
	(void)what;
	if (job->s != NULL) {
		job->s->auth_job = NULL;
		if (!job->ok)
			clients_auth_failure(job->s->addr);
		session_auth_result(job->s, job->user, job->ok);
	}
	event_free(job->ev);
	free(job->user);
	free(job->password);
	free(job);
}

void
auth_check(struct session *s, const char *user, const char *password)
{
	struct auth_job *job = xcalloc(1, sizeof(*job));

	job->s = s;
	job->user = xstrdup(user);
	job->password = xstrdup(password);
	job->hash = dummy_hash;
	for (size_t i = 0; i < smtpd.n_users; i++)
		if (strcmp(smtpd.users[i].name, user) == 0) {
			job->hash = smtpd.users[i].hash;
			break;
		}
	job->ev = event_new(smtpd.d.base, -1, 0, auth_done_cb, job);
	if (job->ev == NULL)
		log_fatal("event_new failed");
	s->auth_job = job;
	session_wait(s, W_AUTH);
	if (!worker_started) {
		if (pthread_create(&worker, NULL, auth_worker, NULL) != 0)
			log_fatal("cannot start the AUTH worker thread");
		pthread_detach(worker);
		worker_started = true;
	}
	pthread_mutex_lock(&queue_lock);
	job->next = NULL;
	*queue_tail = job;
	queue_tail = &job->next;
	pthread_cond_signal(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
}

/* The session ends while its password is being checked. */
void
auth_cancel(struct session *s)
{
	struct auth_job *job = s->auth_job;

	if (job != NULL)
		job->s = NULL;
	s->auth_job = NULL;
}

double
auth_failure_delay(const struct session *s)
{
	unsigned n = clients_auth_failures(s->addr);

	if (n > FAILURE_DELAY_MAX)
		n = FAILURE_DELAY_MAX;
	if (n == 0)
		n = 1;
	return (double)smtpd.d.cfg->smtpd.auth_failure_delay * n;
}
