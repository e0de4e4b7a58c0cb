/*
 * tern-signer - adds DKIM signatures for tern-cleanup. It is the only
 * process that reads the DKIM private keys: it loads them as root at
 * start (ternd replaces it on reload), then chroots into its empty jail
 * (run_dir/jail/signer: it serves the socket ternd passed and reaches
 * none) and runs unprivileged, sandboxed (sandbox.c: no file may be
 * opened, no TCP port used, chrooted or not). Messages are streamed through libopendkim chunk by chunk
 * (IPC_SIGN_* in ipc.h) and never held whole; one signature per selector
 * of the sending [domain], rsa-sha256 or ed25519-sha256, with its
 * dkim_canonicalization.
 * The event loop only moves frames: all of libopendkim's work runs on a
 * pool of worker threads, one job on one thread at a time.
 */
#include "autoconfig.h"

#include <dkim.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "daemon.h"
#include "dkim_key.h"
#include "header_split.h"
#include "key_cache.h"
#include "ipc.h"
#include "peer_proof.h"
#include "sandbox.h"
#include "log.h"
#include "util.h"

/* libopendkim leaks a little per ed25519 signature: start afresh now and
 * then (ternd restarts a daemon that exits). */
#define ED25519_RECYCLE_DEFAULT	50000
#define MAX_HEADER_FIELD	(256 * 1024)
#define MAX_JOBS_PER_CONN	10000	/* a client with more is broken */
#define MAX_WORKERS		16
/* A job goes to a worker at its END or once this much waits, so a
 * message up to this size is one pass (tern-cleanup sends 256 KiB at a
 * time). */
#define JOB_BATCH		(256 * 1024)
/* Reading stops while this much waits for the workers, and resumes below
 * half: memory stays flat however fast the client sends. */
#define PENDING_MAX		(2 * 1024 * 1024)

/* The header fields signed when present; From is also oversigned. */
static const char *const signed_headers[] = {
	"from", "to", "cc", "subject", "date", "message-id", "mime-version",
	"content-type", "content-transfer-encoding", "reply-to",
	"list-unsubscribe", "list-unsubscribe-post", "feedback-id", NULL,
};
static const char *const oversigned_headers[] = { "from", NULL };

/* One selector of a domain, with its key when it could be loaded. */
struct signer_selector {
	const char *selector;
	const char *path;
	bool loaded;
	struct dkim_key key;
};

struct signer_domain {
	const char *name;
	dkim_canon_t header_canon;
	dkim_canon_t body_canon;
	struct signer_selector *selectors;
	size_t n_selectors;
	size_t n_loaded;
};

struct signer_conn;

/* Message bytes waiting for a worker, as they came off the wire. */
struct job_chunk {
	STAILQ_ENTRY(job_chunk) entry;
	size_t len;
	char data[];
};

STAILQ_HEAD(job_chunk_list, job_chunk);

/* Who holds a job that has a domain with keys. */
enum job_state {
	JOB_IDLE,			/* the loop: nothing to do yet */
	JOB_QUEUED,			/* on the work queue */
	JOB_RUNNING,			/* a worker */
	JOB_DONE,			/* on the done queue, for the loop */
};

/*
 * A signing job. The loop only moves bytes: it queues the chunks and the
 * END, and a worker thread does everything libopendkim does (dkim_sign,
 * headers, body, dkim_eom), one worker at a time per job, so that the
 * handles stay single-threaded while every CPU hashes and signs.
 */
struct signer_job {
	/* The loop's. */
	TAILQ_ENTRY(signer_job) entry;	/* on conn->jobs or conn->working */
	struct signer_conn *conn;	/* NULL: orphaned, freed without reply */
	uint32_t reqid;
	char *name;			/* the domain asked for, for logs */
	const struct signer_domain *domain;	/* NULL: no key */
	uint64_t bytes;
	bool working;			/* ended: on conn->working */

	/* Shared: under signer.w.lock. */
	TAILQ_ENTRY(signer_job) wentry;	/* on the work or done queue */
	enum job_state state;
	struct job_chunk_list chunks;	/* not yet hashed */
	size_t pending;			/* bytes in chunks */
	bool ended;			/* END came: sign after the chunks */
	bool cancelled;			/* ABORT or connection gone */

	/* The worker's while queued or running; the loop's once done. */
	bool started;			/* dkim_sign was called */
	DKIM **dkim;			/* one handle per loaded selector */
	const struct signer_selector **sel;
	size_t n_dkim;
	struct header_split split;
	char *error;			/* set: the job fails with TEMPFAIL */
	char **headers;			/* the signatures made */
	size_t n_headers;
	size_t n_ed25519;		/* ed25519 signatures computed */
};

struct signer_conn {
	TAILQ_ENTRY(signer_conn) entry;
	struct ipc_conn *ipc;
	TAILQ_HEAD(, signer_job) jobs;
	size_t n_jobs;
	TAILQ_HEAD(, signer_job) working;	/* ended, with a worker */
	bool proven;			/* its first frame showed the proof */
};

TAILQ_HEAD(signer_job_queue, signer_job);

/* Workers take jobs from work and put finished ones on done; a byte on
 * the pipe tells the loop. The queues, the shared part of each job and
 * the byte count are under lock. */
struct signer_workers {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct signer_job_queue work;
	struct signer_job_queue done;
	size_t pending;			/* bytes queued, all jobs */
	bool reading_paused;		/* the loop stopped reading */
	int pipe[2];
	struct event *ev_done;
	pthread_t threads[MAX_WORKERS];
	size_t n_threads;
};

struct signer {
	struct daemon d;
	DKIM_LIB *lib;
	struct signer_domain *domains;
	size_t n_domains;
	struct evconnlistener *listener;
	TAILQ_HEAD(, signer_conn) conns;
	size_t n_jobs;
	uint64_t ed25519_signed;
	uint64_t ed25519_recycle;	/* 0: never */
	bool reading_paused;		/* the loop's view of w.reading_paused */
	struct signer_workers w;
	/* run_dir/private, noted before the chroot: a client's first frame
	 * must carry a descriptor of it (peer_proof.h), which tern-cleanup
	 * sends and a sandboxed daemon of tern's user cannot open. */
	struct stat client_proof;
};

static struct signer signer;

static void signer_maybe_exit(void);

/* ---- keys: loaded before the privilege drop ---- */

/* libopendkim's header and body canonicalizations for a configured pair. */
static void
canon_of(enum dkim_canonicalization c, dkim_canon_t *header, dkim_canon_t *body)
{
	*header = c == CANON_SIMPLE_SIMPLE || c == CANON_SIMPLE_RELAXED
	    ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
	*body = c == CANON_SIMPLE_SIMPLE || c == CANON_RELAXED_SIMPLE
	    ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
}

static void
signer_load_keys(struct daemon *d)
{
	const struct tern_config *cfg = d->cfg;

	signer.domains = xcalloc(cfg->n_domains + 1, sizeof(*signer.domains));
	signer.n_domains = cfg->n_domains;
	for (size_t i = 0; i < cfg->n_domains; i++) {
		const struct cfg_domain *cd = &cfg->domains[i];
		struct signer_domain *sd = &signer.domains[i];

		sd->name = cd->name;
		canon_of(cd->dkim_canonicalization, &sd->header_canon,
		    &sd->body_canon);
		sd->n_selectors = cd->n_dkim;
		sd->selectors = xcalloc(cd->n_dkim + 1, sizeof(*sd->selectors));
		for (size_t k = 0; k < cd->n_dkim; k++) {
			struct signer_selector *s = &sd->selectors[k];
			char *why = NULL;

			s->selector = cd->dkim_selectors[k];
			s->path = cd->dkim_keys[k];
			if (dkim_key_load(s->path, &s->key, &why) == -1) {
				log_warn("domain=%s selector=%s: %s; mail from "
				    "this domain is not signed with it", sd->name,
				    s->selector, why);
				free(why);
				continue;
			}
			s->loaded = true;
			sd->n_loaded++;
			if (key_cache_add(s->key.pem) == -1)
				log_warn("domain=%s selector=%s: cannot keep the "
				    "parsed key; it is parsed per message",
				    sd->name, s->selector);
			log_info("domain=%s selector=%s key=%s algorithm=%s-sha256 "
			    "bits=%d: loaded", sd->name, s->selector, s->path,
			    dkim_key_alg_name(s->key.alg), s->key.bits);
		}
		/* A domain without selectors is sent unsigned by design
		 * (cleanup does not ask); one whose keys all failed is not. */
		if (sd->n_loaded == 0 && cd->n_dkim > 0)
			log_warn("domain=%s: no usable DKIM key; its mail is "
			    "refused with a temporary error until one is "
			    "configured", sd->name);
	}
}

static const struct signer_domain *
signer_find_domain(const char *name)
{
	for (size_t i = 0; i < signer.n_domains; i++)
		if (strcasecmp(signer.domains[i].name, name) == 0)
			return &signer.domains[i];
	return NULL;
}

/* ---- jobs ---- */

static int
job_fail(struct signer_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
job_fail(struct signer_job *job, const char *fmt, ...)
{
	va_list ap;

	if (job->error == NULL) {
		va_start(ap, fmt);
		if (vasprintf(&job->error, fmt, ap) == -1)
			log_fatal("out of memory");
		va_end(ap);
	}
	return -1;
}

/* The text of a libopendkim failure on handle i. */
static const char *
job_dkim_error(struct signer_job *job, size_t i, DKIM_STAT stat)
{
	const char *e = dkim_geterror(job->dkim[i]);

	return e != NULL && *e != '\0' ? e : dkim_getresultstr(stat);
}

static int
job_field(void *arg, const char *field, size_t len)
{
	struct signer_job *job = arg;

	for (size_t i = 0; i < job->n_dkim; i++) {
		DKIM_STAT stat = dkim_header(job->dkim[i], (u_char *)field, len);

		if (stat != DKIM_STAT_OK)
			return job_fail(job, "header field refused: %s",
			    job_dkim_error(job, i, stat));
	}
	return 0;
}

static int
job_eoh(void *arg)
{
	struct signer_job *job = arg;

	for (size_t i = 0; i < job->n_dkim; i++) {
		DKIM_STAT stat = dkim_eoh(job->dkim[i]);

		if (stat != DKIM_STAT_OK)
			return job_fail(job, "end of header refused: %s",
			    job_dkim_error(job, i, stat));
	}
	return 0;
}

static int
job_body(void *arg, const char *buf, size_t len)
{
	struct signer_job *job = arg;

	for (size_t i = 0; i < job->n_dkim; i++) {
		DKIM_STAT stat = dkim_body(job->dkim[i], (u_char *)buf, len);

		if (stat != DKIM_STAT_OK)
			return job_fail(job, "body refused: %s",
			    job_dkim_error(job, i, stat));
	}
	return 0;
}

static const struct header_split_ops job_split_ops = {
	.field = job_field,
	.eoh = job_eoh,
	.body = job_body,
};

static struct signer_job *
job_find(struct signer_conn *sc, uint32_t reqid)
{
	struct signer_job *job;

	TAILQ_FOREACH(job, &sc->jobs, entry)
		if (job->reqid == reqid)
			return job;
	return NULL;
}

/* Under the lock: bytes left the queue. True when reading may resume. */
static bool
pending_sub_locked(size_t bytes)
{
	signer.w.pending -= bytes;
	if (signer.w.reading_paused && signer.w.pending <= PENDING_MAX / 2) {
		signer.w.reading_paused = false;
		return true;
	}
	return false;
}

static void conns_set_reading(bool on);

static void
chunks_free(struct job_chunk_list *list)
{
	struct job_chunk *c;

	while ((c = STAILQ_FIRST(list)) != NULL) {
		STAILQ_REMOVE_HEAD(list, entry);
		free(c);
	}
}

/* On the loop, once no worker holds the job. */
static void
job_free(struct signer_job *job)
{
	if (job->conn != NULL) {
		/* Ended jobs wait on the working list, open ones on jobs. */
		if (job->working)
			TAILQ_REMOVE(&job->conn->working, job, entry);
		else
			TAILQ_REMOVE(&job->conn->jobs, job, entry);
		job->conn->n_jobs--;
	}
	if (!STAILQ_EMPTY(&job->chunks)) {
		bool resume;

		pthread_mutex_lock(&signer.w.lock);
		resume = pending_sub_locked(job->pending);
		pthread_mutex_unlock(&signer.w.lock);
		chunks_free(&job->chunks);
		if (resume)
			conns_set_reading(true);
	}
	for (size_t i = 0; i < job->n_dkim; i++)
		if (job->dkim[i] != NULL)
			dkim_free(job->dkim[i]);
	free(job->dkim);
	free(job->sel);
	header_split_free(&job->split);
	for (size_t i = 0; i < job->n_headers; i++)
		free(job->headers[i]);
	free(job->headers);
	free(job->error);
	free(job->name);
	free(job);
	signer.n_jobs--;
}

/* A copy of a domain from the wire that is safe to log. */
static char *
log_safe_name(const char *s)
{
	char *copy = xstrndup(s, 255);

	for (char *p = copy; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '=')
			*p = '?';
	return copy;
}

static struct signer_job *
job_new(struct signer_conn *sc, uint32_t reqid, const char *domain)
{
	struct signer_job *job = xcalloc(1, sizeof(*job));
	const struct signer_domain *sd = signer_find_domain(domain);

	job->conn = sc;
	job->reqid = reqid;
	STAILQ_INIT(&job->chunks);
	TAILQ_INSERT_TAIL(&sc->jobs, job, entry);
	sc->n_jobs++;
	signer.n_jobs++;
	if (sd == NULL || sd->n_loaded == 0) {
		job->name = log_safe_name(domain);
		return job;
	}
	job->domain = sd;
	job->name = xstrdup(sd->name);	/* lower case, as configured */
	return job;
}

/* ---- on a worker thread ---- */

/* The libopendkim handles, one per loaded selector. */
static void
job_start(struct signer_job *job)
{
	const struct signer_domain *sd = job->domain;

	job->started = true;
	header_split_init(&job->split, &job_split_ops, job, MAX_HEADER_FIELD);
	job->dkim = xcalloc(sd->n_loaded, sizeof(*job->dkim));
	job->sel = xcalloc(sd->n_loaded, sizeof(*job->sel));
	for (size_t k = 0; k < sd->n_selectors; k++) {
		const struct signer_selector *s = &sd->selectors[k];
		DKIM_STAT stat;
		DKIM *dkim;

		if (!s->loaded)
			continue;
		dkim = dkim_sign(signer.lib, (const u_char *)"tern-signer", NULL,
		    (dkim_sigkey_t)s->key.pem, (const u_char *)s->selector,
		    (const u_char *)sd->name, sd->header_canon,
		    sd->body_canon, s->key.alg == DKIM_KEY_ED25519
		    ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &stat);
		if (dkim == NULL) {
			job_fail(job, "dkim_sign for selector %s: %s", s->selector,
			    dkim_getresultstr(stat));
			break;
		}
		/*
		 * libopendkim folds the DKIM-Signature field twice: with an
		 * empty b= when it hashes the field at dkim_eom, with the
		 * signature in dkim_getsighdr_d. Whether "b=" starts a new
		 * line is decided from the length of b='s value, which it
		 * predicts from the key size for RSA only: for ed25519 it
		 * hashes "...; b=" and returns "...;\r\n\tb=...", so the field
		 * sent is not the one signed. Relaxed header canonicalization
		 * hides that, simple does not. Unfolded (margin 0) the two
		 * are the same bytes; an ed25519 field stays far below 998.
		 */
		if (s->key.alg == DKIM_KEY_ED25519 &&
		    (stat = dkim_set_margin(dkim, 0)) != DKIM_STAT_OK) {
			dkim_free(dkim);
			job_fail(job, "dkim_set_margin for selector %s: %s",
			    s->selector, dkim_getresultstr(stat));
			break;
		}
		job->sel[job->n_dkim] = s;
		job->dkim[job->n_dkim++] = dkim;
	}
}

/* The end of the message and the private-key operation of every
 * selector. */
static void
job_sign(struct signer_job *job)
{
	if (job->error == NULL && header_split_finish(&job->split) == -1)
		job_fail(job, "%s", job->split.error);
	if (job->error != NULL)
		return;
	job->headers = xcalloc(job->n_dkim + 1, sizeof(*job->headers));
	for (size_t i = 0; i < job->n_dkim; i++) {
		unsigned char *sig = NULL;
		size_t len = 0;
		DKIM_STAT stat = dkim_eom(job->dkim[i], NULL);

		/* The leak is per signature computed, sent or not. */
		if (job->sel[i]->key.alg == DKIM_KEY_ED25519)
			job->n_ed25519++;
		/* The width of "DKIM-Signature: ", as at dkim_eom's hashing:
		 * the field is sent as folded for exactly that prefix. */
		if (stat == DKIM_STAT_OK)
			stat = dkim_getsighdr_d(job->dkim[i],
			    strlen(DKIM_SIGNHEADER) + 2, &sig, &len);
		if (stat != DKIM_STAT_OK) {
			job_fail(job, "selector %s: %s", job->sel[i]->selector,
			    job_dkim_error(job, i, stat));
			break;
		}
		job->headers[job->n_headers++] = xasprintf("%s: %.*s",
		    DKIM_SIGNHEADER, (int)len, (const char *)sig);
	}
}

/* One pass over what the loop queued for the job. */
static void
job_work(struct signer_job *job, struct job_chunk_list *chunks, bool ended)
{
	struct job_chunk *c;

	if (!job->started)
		job_start(job);
	STAILQ_FOREACH(c, chunks, entry)
		if (job->error == NULL &&
		    header_split_feed(&job->split, c->data, c->len) == -1)
			job_fail(job, "%s", job->split.error);
	if (ended)
		job_sign(job);
}

static void
workers_notify(struct signer_workers *w)
{
	while (write(w->pipe[1], "", 1) == -1 && errno == EINTR)
		;
}

static void *
worker_main(void *arg)
{
	struct signer_workers *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct job_chunk_list chunks;
		struct signer_job *job;
		size_t bytes;
		bool ended, cancelled, notify = false;

		while (TAILQ_EMPTY(&w->work))
			pthread_cond_wait(&w->cond, &w->lock);
		job = TAILQ_FIRST(&w->work);
		TAILQ_REMOVE(&w->work, job, wentry);
		job->state = JOB_RUNNING;
		STAILQ_INIT(&chunks);
		STAILQ_CONCAT(&chunks, &job->chunks);
		bytes = job->pending;
		job->pending = 0;
		cancelled = job->cancelled;
		ended = job->ended && !cancelled;
		pthread_mutex_unlock(&w->lock);

		if (!cancelled)
			job_work(job, &chunks, ended);
		chunks_free(&chunks);

		pthread_mutex_lock(&w->lock);
		if (pending_sub_locked(bytes))
			notify = true;	/* the loop reads again */
		if (ended || job->cancelled) {
			job->state = JOB_DONE;
			if (TAILQ_EMPTY(&w->done))
				notify = true;
			TAILQ_INSERT_TAIL(&w->done, job, wentry);
		} else if (job->ended || job->pending >= JOB_BATCH ||
		    (w->reading_paused && job->pending > 0)) {
			job->state = JOB_QUEUED;
			TAILQ_INSERT_TAIL(&w->work, job, wentry);
		} else {
			job->state = JOB_IDLE;
		}
		if (notify) {
			pthread_mutex_unlock(&w->lock);
			workers_notify(w);
			pthread_mutex_lock(&w->lock);
		}
	}
	return NULL;
}

/* ---- back on the loop ---- */

/* Under the lock: the job goes to the workers unless they have it. */
static void
job_schedule_locked(struct signer_job *job)
{
	if (job->state != JOB_IDLE)
		return;
	job->state = JOB_QUEUED;
	TAILQ_INSERT_TAIL(&signer.w.work, job, wentry);
	pthread_cond_signal(&signer.w.cond);
}

/* The loop's half of the backpressure (the workers clear
 * w.reading_paused and say so on the pipe). */
static void
conns_set_reading(bool on)
{
	struct signer_conn *sc;

	if (signer.reading_paused == !on)
		return;
	signer.reading_paused = !on;
	TAILQ_FOREACH(sc, &signer.conns, entry)
		ipc_conn_set_reading(sc->ipc, on);
}

/* Under the lock, before reading stops: every job with bytes waiting
 * goes to the workers, or nothing would drain them. */
static void
schedule_all_pending_locked(void)
{
	struct signer_conn *sc;
	struct signer_job *job;

	TAILQ_FOREACH(sc, &signer.conns, entry)
		TAILQ_FOREACH(job, &sc->jobs, entry)
			if (job->pending > 0)
				job_schedule_locked(job);
}

/* DATA: a copy of the chunk for the worker (the frame is gone after the
 * callback). */
static void
job_data(struct signer_job *job, const void *data, size_t len)
{
	struct job_chunk *c = xmalloc(sizeof(*c) + len);
	bool pause = false;

	c->len = len;
	memcpy(c->data, data, len);
	pthread_mutex_lock(&signer.w.lock);
	STAILQ_INSERT_TAIL(&job->chunks, c, entry);
	job->pending += len;
	signer.w.pending += len;
	/* While reading is paused every byte must reach a worker, or the
	 * bytes that wait would never fall below the limit. */
	if (job->pending >= JOB_BATCH || signer.w.reading_paused)
		job_schedule_locked(job);
	if (!signer.w.reading_paused && signer.w.pending > PENDING_MAX) {
		pause = signer.w.reading_paused = true;
		schedule_all_pending_locked();
	}
	pthread_mutex_unlock(&signer.w.lock);
	if (pause)
		conns_set_reading(false);
}

static void
job_reply(struct signer_job *job, uint8_t status, const char *error,
    char **headers, size_t n)
{
	struct ipc_out *o = ipc_out_new(IPC_SIGN_REPLY, job->reqid);

	ipc_put_u8(o, status);
	ipc_put_str(o, error);
	ipc_put_u32(o, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		ipc_put_str(o, headers[i]);
	ipc_conn_send(job->conn->ipc, o);
}

/* END: answer NO_KEY at once, else the workers finish the job
 * (true: it belongs to them until job_done). */
static bool
job_end(struct signer_job *job)
{
	struct signer_conn *sc = job->conn;

	if (job->domain == NULL) {
		log_warn("reqid=%u domain=%s: no DKIM key for the domain: not "
		    "signed", job->reqid, *job->name ? job->name : "(none)");
		job_reply(job, SIGN_NO_KEY, "no DKIM key for the sending domain",
		    NULL, 0);
		return false;
	}
	TAILQ_REMOVE(&sc->jobs, job, entry);
	TAILQ_INSERT_TAIL(&sc->working, job, entry);
	job->working = true;
	pthread_mutex_lock(&signer.w.lock);
	job->ended = true;
	job_schedule_locked(job);
	pthread_mutex_unlock(&signer.w.lock);
	return true;
}

/*
 * ABORT or the connection closed: a job no worker holds is freed now;
 * one a worker runs (or has finished) is freed by job_done, unanswered.
 */
static void
job_cancel(struct signer_job *job)
{
	bool held;

	pthread_mutex_lock(&signer.w.lock);
	if (job->state == JOB_QUEUED) {
		TAILQ_REMOVE(&signer.w.work, job, wentry);
		job->state = JOB_IDLE;
	}
	held = job->state != JOB_IDLE;
	job->cancelled = true;
	pthread_mutex_unlock(&signer.w.lock);
	if (!held) {
		job_free(job);
		return;
	}
	if (job->working)
		TAILQ_REMOVE(&job->conn->working, job, entry);
	else
		TAILQ_REMOVE(&job->conn->jobs, job, entry);
	job->conn->n_jobs--;
	job->conn = NULL;
}

/* A worker is done with the job: answer (unless orphaned) and free. */
static void
job_done(struct signer_job *job)
{
	signer.ed25519_signed += job->n_ed25519;
	if (job->conn != NULL && job->error != NULL) {
		log_warn("reqid=%u domain=%s size=%llu: not signed: %s",
		    job->reqid, job->name,
		    (unsigned long long)job->bytes, job->error);
		job_reply(job, SIGN_TEMPFAIL, job->error, NULL, 0);
	} else if (job->conn != NULL) {
		log_info("reqid=%u domain=%s size=%llu signatures=%zu: signed",
		    job->reqid, job->name,
		    (unsigned long long)job->bytes, job->n_headers);
		job_reply(job, SIGN_OK, "", job->headers, job->n_headers);
	} else {
		log_info("reqid=%u domain=%s: the client went away while it was "
		    "signed: dropped", job->reqid, job->name);
	}
	job_free(job);
}

static void
workers_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct signer_job_queue done;
	struct signer_job *job;
	char buf[256];
	bool resume;

	(void)what;
	(void)arg;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	TAILQ_INIT(&done);
	pthread_mutex_lock(&signer.w.lock);
	TAILQ_CONCAT(&done, &signer.w.done, wentry);
	resume = !signer.w.reading_paused;
	pthread_mutex_unlock(&signer.w.lock);
	if (resume)
		conns_set_reading(true);
	while ((job = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, job, wentry);
		job_done(job);
	}
	signer_maybe_exit();
}

/*
 * Two workers per CPU (at least 4), before the loop runs. Signing is the
 * slowest stage of the pipeline and the scheduler shares a CPU among
 * runnable threads: with two threads per CPU the signer gets a larger
 * share when everything is busy (4 KiB messages with rsa-sha256 on 2 CPUs:
 * 1,293 against 1,206 msg/s end to end, medians of 3 alternated runs).
 */
static void
workers_start(struct event_base *base)
{
	struct signer_workers *w = &signer.w;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus < 2 ? 4 : 2 * (size_t)cpus > MAX_WORKERS ? MAX_WORKERS
	    : 2 * (size_t)cpus;

	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	TAILQ_INIT(&w->work);
	TAILQ_INIT(&w->done);
	if (pipe2(w->pipe, O_CLOEXEC | O_NONBLOCK) == -1)
		log_fatal("pipe: %s", strerror(errno));
	w->ev_done = event_new(base, w->pipe[0], EV_READ | EV_PERSIST,
	    workers_done_cb, NULL);
	if (w->ev_done == NULL || event_add(w->ev_done, NULL) == -1)
		log_fatal("cannot watch the workers' pipe");
	for (size_t i = 0; i < n; i++) {
		int rc = pthread_create(&w->threads[i], NULL, worker_main, w);

		if (rc != 0)
			log_fatal("cannot start a signing thread: %s",
			    strerror(rc));
		w->n_threads++;
	}
	log_debug("%zu signing threads", w->n_threads);
}

/* ---- the IPC conversation ---- */

static void
conn_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct signer_conn *sc = arg;
	struct signer_job *job = job_find(sc, m->reqid);
	const char *domain;
	const void *data;
	size_t len;

	if (!sc->proven) {
		pid_t pid = 0;
		uid_t uid = 0;
		gid_t gid = 0;

		if (!peer_proof_check(m, &signer.client_proof)) {
			(void)ipc_conn_peer_cred(c, &pid, &uid, &gid);
			log_warn("refused %s from pid %ld: no descriptor of "
			    "run_dir/private came with it, so it is not "
			    "tern-cleanup (a sandboxed daemon cannot open that)",
			    ipc_type_name(m->type) ? ipc_type_name(m->type) :
			    "a message", (long)pid);
			ipc_conn_protocol_error(c, "refused: not tern-cleanup");
			return;
		}
		sc->proven = true;
	}
	switch (m->type) {
	case IPC_SIGN_BEGIN:
		if (ipc_get_str(m, &domain) == -1 || ipc_msg_end(m) == -1) {
			ipc_conn_protocol_error(c, "malformed SIGN_BEGIN");
			return;
		}
		if (job != NULL) {
			ipc_conn_protocol_error(c, "SIGN_BEGIN for job %u which "
			    "is already open", m->reqid);
			return;
		}
		if (sc->n_jobs >= MAX_JOBS_PER_CONN) {
			ipc_conn_protocol_error(c, "more than %d jobs open",
			    MAX_JOBS_PER_CONN);
			return;
		}
		job_new(sc, m->reqid, domain);
		return;
	case IPC_SIGN_DATA:
		if (ipc_get_data(m, &data, &len) == -1 || ipc_msg_end(m) == -1 ||
		    len > IPC_DATA_CHUNK) {
			ipc_conn_protocol_error(c, "malformed SIGN_DATA");
			return;
		}
		if (job == NULL) {
			ipc_conn_protocol_error(c, "SIGN_DATA for unknown job %u",
			    m->reqid);
			return;
		}
		job->bytes += len;
		if (job->domain != NULL && len > 0)
			job_data(job, data, len);
		return;
	case IPC_SIGN_END:
	case IPC_SIGN_ABORT:
		if (ipc_msg_end(m) == -1) {
			ipc_conn_protocol_error(c, "malformed %s",
			    ipc_type_name(m->type));
			return;
		}
		if (job == NULL) {
			/* An ABORT may cross the reply to its END. */
			if (m->type == IPC_SIGN_END)
				ipc_conn_protocol_error(c, "SIGN_END for unknown "
				    "job %u", m->reqid);
			return;
		}
		if (m->type == IPC_SIGN_END && job_end(job))
			return;		/* a worker signs it; job_done answers */
		job_cancel(job);
		signer_maybe_exit();
		return;
	default:
		ipc_conn_protocol_error(c, "unexpected %s",
		    ipc_type_name(m->type));
		return;
	}
}

static void
conn_close_cb(struct ipc_conn *c, const char *why, void *arg)
{
	struct signer_conn *sc = arg;
	struct signer_job *job;

	if (!TAILQ_EMPTY(&sc->jobs))
		log_warn("connection from %s closed with jobs open: %s",
		    ipc_conn_peer_name(c), why);
	/* Jobs a worker holds are freed when it is done, without a reply. */
	while ((job = TAILQ_FIRST(&sc->jobs)) != NULL)
		job_cancel(job);
	while ((job = TAILQ_FIRST(&sc->working)) != NULL)
		job_cancel(job);
	TAILQ_REMOVE(&signer.conns, sc, entry);
	ipc_conn_free(c);
	free(sc);
	signer_maybe_exit();
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct signer_conn *sc = xcalloc(1, sizeof(*sc));

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	TAILQ_INIT(&sc->jobs);
	TAILQ_INIT(&sc->working);
	TAILQ_INSERT_TAIL(&signer.conns, sc, entry);
	sc->ipc = ipc_conn_new(signer.d.base, fd, "signer", conn_msg_cb,
	    conn_close_cb, sc);
	if (signer.reading_paused)
		ipc_conn_set_reading(sc->ipc, false);
}

/* ---- lifecycle ---- */

static void
signer_stop_listening(void)
{
	if (signer.listener != NULL) {
		evconnlistener_free(signer.listener);
		signer.listener = NULL;
	}
}

/* Exits once idle when draining or due for recycling. */
static void
signer_maybe_exit(void)
{
	bool recycle = signer.ed25519_recycle > 0 &&
	    signer.ed25519_signed >= signer.ed25519_recycle;

	if (signer.n_jobs > 0 || (!signer.d.draining && !recycle))
		return;
	if (recycle && !signer.d.draining)
		log_info("recycling after %llu ed25519 signatures",
		    (unsigned long long)signer.ed25519_signed);
	log_info("%lu signatures used the keys parsed at start",
	    key_cache_hits());
	signer_stop_listening();
	daemon_exit(&signer.d);
}

static void
signer_drain(struct daemon *d)
{
	(void)d;
	signer_stop_listening();
	signer_maybe_exit();
}

static void
signer_open_privileged(struct daemon *d)
{
	signer_load_keys(d);
	peer_proof_note(&signer.client_proof, d->cfg->server.run_dir,
	    "private");
}

static const struct daemon_spec signer_spec = {
	.name = "signer",
	.chroot_run_dir = true,
	.open_privileged = signer_open_privileged,
	.drain = signer_drain,
};

static void
signer_setup_lib(void)
{
	signer.lib = dkim_init(NULL, NULL);
	if (signer.lib == NULL)
		log_fatal("dkim_init failed");
	if (dkim_options(signer.lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
	    (void *)signed_headers, sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(signer.lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
	    (void *)oversigned_headers, sizeof(char **)) !=
	    DKIM_STAT_OK)
		log_fatal("cannot set the signed header list of libopendkim");
	if (!dkim_libfeature(signer.lib, DKIM_FEATURE_ED25519))
		log_warn("this libopendkim cannot sign with ed25519");
}

int
main(int argc, char **argv)
{
	struct daemon *d = &signer.d;
	const char *env = getenv("TERN_SIGNER_ED25519_RECYCLE");
	int fd;

	TAILQ_INIT(&signer.conns);
	signer.ed25519_recycle = ED25519_RECYCLE_DEFAULT;
	daemon_init(d, &signer_spec, argc, argv);
	malloc_keep_freed_heap();
	if (env != NULL && parse_uint64(env, UINT64_MAX,
	    &signer.ed25519_recycle) == -1)
		log_fatal("TERN_SIGNER_ED25519_RECYCLE=%s is not a number", env);
	signer_setup_lib();
	/* Before the signing threads: Landlock covers threads started later. */
	sandbox_enter(sandbox_new());
	workers_start(d->base);

	fd = daemon_socket(d, "unix:signer");
	if (fd == -1)
		log_fatal("no unix:signer socket from the master (tern-signer is "
		    "started by ternd)");
	fd_set_nonblock(fd);
	signer.listener = evconnlistener_new(d->base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (signer.listener == NULL)
		log_fatal("cannot listen on the signer socket: %s",
		    strerror(errno));
	return daemon_run(d);
}
