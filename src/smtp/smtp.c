/*
 * tern-smtp - the delivery agent. A pool of these is started by ternd;
 * each connects to tern-qmgr (run_dir/private/qmgr), grants it credits
 * with DELIVERY_READY, takes DELIVERY_JOBs (one message, one destination
 * domain, some recipients), finds the MX (libunbound), delivers over SMTP
 * with STARTTLS, and answers each job with one DELIVERY_RESULT holding a
 * result per recipient. Message content comes from the queue through
 * short read-only LMDB transactions; tern-smtp writes nothing.
 *
 * It parses untrusted network input, runs unprivileged and holds no keys.
 * It is not chrooted, but once set up it is sandboxed (sandbox.c): the
 * queue it opened read-only stays its only view of the queue directory;
 * it may read nothing but the system trust store's directories, create
 * nothing, and connect over TCP only to the SMTP and DNS ports.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unbound.h>
#include <unistd.h>

#include "daemon.h"
#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "sandbox.h"
#include "smtp.h"
#include "util.h"

#define HOUSEKEEPING_SEC	1
#define READER_CHECK_SEC	60
#define QUEUE_WAIT_SEC		30	/* for a writer to create the queue */

struct agent agent;

static void agent_send_ready(void);

/* ---- jobs ---- */

static void
job_free(struct job *j)
{
	for (size_t i = 0; i < j->n_rcpts; i++) {
		free(j->rcpts[i].address);
		free(j->rcpts[i].orcpt);
	}
	free(j->rcpts);
	free(j->sender);
	free(j->domain);
	free(j->envid);
	free(j);
}

bool
job_is_done(const struct job *j)
{
	for (size_t i = 0; i < j->n_rcpts; i++)
		if (!j->rcpts[i].done)
			return false;
	return true;
}

/* Postfix prints delays with two significant digits. */
static void
fmt_delay(char *buf, size_t size, double secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 0.01)
		snprintf(buf, size, "%s", secs == 0 ? "0" : "0.01");
	else if (secs < 10)
		snprintf(buf, size, "%.2g", secs);
	else
		snprintf(buf, size, "%.0f", secs);
}

void
job_rcpt_result(struct job *j, struct job_rcpt *r, uint8_t stage,
    uint16_t code, const char *status, const char *text)
{
	uint64_t now = tern_monotonic_usec();
	double in_queue, before, setup, xfer, total;
	char d_total[32], d_a[32], d_b[32], d_c[32], d_d[32], relay[400];
	const char *word;

	if (r->done)
		return;
	r->done = true;
	r->code = code;
	r->stage = stage;
	tern_strlcpy(r->status, status, sizeof(r->status));
	tern_strlcpy(r->text, text, sizeof(r->text));

	/* delays=a/b/c/d: before the agent, in the agent before a
	 * connection, connection setup, transmission (as Postfix). */
	in_queue = j->arrival_ms > 0 ? (double)(queue_now_ms() - j->arrival_ms) /
	    1000.0 - (double)(now - j->t_received) / 1e6 : 0;
	if (j->t_session == 0) {
		before = (double)(now - j->t_received) / 1e6;
		setup = xfer = 0;
	} else {
		uint64_t ready = j->t_ready ? j->t_ready : now;

		before = (double)(j->t_session - j->t_received) / 1e6;
		setup = (double)(ready - j->t_session) / 1e6;
		xfer = (double)(now - ready) / 1e6;
	}
	if (in_queue < 0)
		in_queue = 0;
	total = in_queue + before + setup + xfer;
	fmt_delay(d_total, sizeof(d_total), total);
	fmt_delay(d_a, sizeof(d_a), in_queue);
	fmt_delay(d_b, sizeof(d_b), before);
	fmt_delay(d_c, sizeof(d_c), setup);
	fmt_delay(d_d, sizeof(d_d), xfer);
	if (j->connected)
		snprintf(relay, sizeof(relay), "%s[%s]:%u", j->relay_host,
		    j->relay_addr, j->relay_port);
	else
		snprintf(relay, sizeof(relay), "none");
	word = status[0] == '2' ? "sent" : status[0] == '5' ? "bounced" :
	    "deferred";
	log_info("%s: to=<%s>, relay=%s, delay=%s, delays=%s/%s/%s/%s, "
	    "dsn=%s, status=%s (%s)", j->qid_text, r->address, relay, d_total,
	    d_a, d_b, d_c, d_d, status, word, text);
}

void
job_fail_rest(struct job *j, uint8_t stage, uint16_t code,
    const char *status, const char *text)
{
	for (size_t i = 0; i < j->n_rcpts; i++)
		job_rcpt_result(j, &j->rcpts[i], stage, code, status, text);
}

void
job_finish(struct job *j)
{
	uint64_t ms = (tern_monotonic_usec() - j->t_received) / 1000;
	size_t fixed, share, text_max;
	struct ipc_out *o;

	if (!job_is_done(j)) {
		/* A bug, but never a lost recipient: defer what is left. */
		log_warn("%s: job %u finished with recipients undecided",
		    j->qid_text, j->id);
		job_fail_rest(j, DELIVERY_STAGE_NONE, 0, "4.3.0",
		    "internal error in the delivery agent");
	}
	/* Each recipient's share of one frame bounds its text. */
	fixed = 4 + 2 + 1 + 4 + 16 + 4 + 4 + strlen(j->relay_host) + 1 + 4 +
	    strlen(j->relay_addr) + 1 + 4 + strlen(j->tls) + 1 + 8;
	share = (IPC_MAX_PAYLOAD - 64) / j->n_rcpts;
	text_max = share > fixed + 1 ? share - fixed - 1 : 0;
	o = ipc_out_new(IPC_DELIVERY_RESULT, j->id);
	ipc_put_u32(o, (uint32_t)j->n_rcpts);
	for (size_t i = 0; i < j->n_rcpts; i++) {
		struct job_rcpt *r = &j->rcpts[i];

		if (strlen(r->text) > text_max)
			r->text[text_max] = '\0';
		ipc_put_u32(o, r->index);
		ipc_put_u16(o, r->code);
		ipc_put_u8(o, r->stage);
		ipc_put_str(o, r->status);
		ipc_put_str(o, r->text);
		ipc_put_str(o, j->relay_host);
		ipc_put_str(o, j->relay_addr);
		ipc_put_str(o, j->tls);
		ipc_put_u64(o, ms);
	}
	/* Job ids belong to one qmgr connection: a result for a job of an
	 * earlier one must not reach the next qmgr, which may have reused
	 * the id. That qmgr requeues the recipients itself. */
	if (j->qmgr_gen != agent.qmgr_gen) {
		ipc_out_free(o);
		log_warn("%s: the connection to tern-qmgr that sent job %u is "
		    "gone: its result is dropped (qmgr tries the recipients "
		    "again)", j->qid_text, j->id);
	} else if (ipc_client_send(agent.qmgr, o) == -1)
		log_warn("%s: tern-qmgr is not connected: the result of job %u is "
		    "lost (qmgr will try the recipients again)", j->qid_text, j->id);
	agent.n_jobs--;
	job_free(j);
	if (agent.d.draining && agent.n_jobs == 0)
		daemon_exit(&agent.d);
}

/* Reads a DELIVERY_JOB; NULL (and a protocol error) when malformed. */
static struct job *
job_decode(struct ipc_conn *c, struct ipc_msg *m)
{
	struct job *j = xcalloc(1, sizeof(*j));
	const char *qid, *sender, *domain, *envid;
	uint32_t n;

	j->id = m->reqid;
	if (ipc_get_str(m, &qid) == -1 || queue_id_parse(qid, &j->qid) == -1 ||
	    ipc_get_str(m, &sender) == -1 || ipc_get_str(m, &domain) == -1 ||
	    ipc_get_u8(m, &j->body) == -1 || ipc_get_bool(m, &j->smtputf8) == -1 ||
	    ipc_get_u64(m, &j->size) == -1 || ipc_get_u8(m, &j->ret) == -1 ||
	    ipc_get_str(m, &envid) == -1 || ipc_get_i64(m, &j->arrival_ms) == -1 ||
	    ipc_get_u32(m, &n) == -1 || n == 0 || n > IPC_DELIVERY_MAX_RCPTS ||
	    domain[0] == '\0' || j->body > CLEANUP_BODY_BINARYMIME ||
	    j->ret > CLEANUP_RET_HDRS) {
		ipc_conn_protocol_error(c, "malformed DELIVERY_JOB");
		free(j);
		return NULL;
	}
	queue_id_format(j->qid, j->qid_text);
	j->sender = xstrdup(sender);
	j->domain = xstrdup(domain);
	j->envid = xstrdup(envid);
	j->rcpts = xcalloc(n, sizeof(*j->rcpts));
	for (uint32_t i = 0; i < n; i++) {
		struct job_rcpt *r = &j->rcpts[i];
		const char *addr, *orcpt;

		if (ipc_get_u32(m, &r->index) == -1 ||
		    ipc_get_str(m, &addr) == -1 || ipc_get_str(m, &orcpt) == -1 ||
		    ipc_get_u8(m, &r->notify) == -1 || addr[0] == '\0') {
			ipc_conn_protocol_error(c, "malformed DELIVERY_JOB recipient");
			job_free(j);
			return NULL;
		}
		r->address = xstrdup(addr);
		r->orcpt = xstrdup(orcpt);
		j->n_rcpts++;
	}
	if (ipc_msg_end(m) == -1) {
		ipc_conn_protocol_error(c, "DELIVERY_JOB with bytes left over");
		job_free(j);
		return NULL;
	}
	return j;
}

/* ---- the conversation with tern-qmgr ---- */

static void
qmgr_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct job *j;

	(void)arg;
	if (m->type != IPC_DELIVERY_JOB) {
		ipc_conn_protocol_error(c, "unexpected %s from qmgr",
		    ipc_type_name(m->type) ? ipc_type_name(m->type) : "message");
		return;
	}
	j = job_decode(c, m);
	if (j == NULL)
		return;
	j->t_received = tern_monotonic_usec();
	j->qmgr_gen = agent.qmgr_gen;
	agent.n_jobs++;
	log_debug("%s: job %u: %zu recipient(s) at %s", j->qid_text, j->id,
	    j->n_rcpts, j->domain);
	if (agent.d.draining) {
		job_fail_rest(j, DELIVERY_STAGE_NONE, 0, "4.3.2",
		    "delivery agent shutting down");
		job_finish(j);
		return;
	}
	dest_add_job(j);
}

static void
agent_send_ready(void)
{
	struct ipc_out *o;
	unsigned credits;

	if (agent.d.draining || !ipc_client_is_up(agent.qmgr))
		return;
	credits = agent.n_jobs < agent.credits_max ?
	    agent.credits_max - (unsigned)agent.n_jobs : 0;
	if (credits == 0)
		return;
	o = ipc_out_new(IPC_DELIVERY_READY, 0);
	ipc_put_u32(o, credits);
	ipc_client_send(agent.qmgr, o);
}

static void
qmgr_state_cb(struct ipc_client *cl, bool up, void *arg)
{
	(void)cl;
	(void)arg;
	agent.qmgr_gen++;
	if (up) {
		log_debug("connected to tern-qmgr");
		agent_send_ready();
	} else
		log_info("lost the connection to tern-qmgr; reconnecting");
}

/* ---- setup ---- */

/*
 * Opens the queue read-only, waiting for a writer (tern-cleanup, started
 * first) to have created it: the sandbox allows no open later.
 */
static void
agent_open_queue(void)
{
	struct queue_options o;

	queue_options_from_config(&o, agent.cfg, QUEUE_OPEN_READONLY);
	for (int tries = 0; tries < QUEUE_WAIT_SEC * 2; tries++) {
		agent.queue = queue_open(&o);
		if (agent.queue != NULL)
			return;
		daemon_setup_wait(&agent.d, 500);
	}
	log_fatal("cannot open the queue %s: %s", o.dir,
	    queue_strerror(queue_last_error()));
}

static void
agent_init_tls(void)
{
	const struct tern_config *cfg = agent.cfg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		log_fatal("SSL_CTX_new failed");
	/* Verification is judged after the handshake: opportunistic TLS
	 * goes on with an untrusted certificate, required TLS does not. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (cfg->delivery.tls_ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->delivery.tls_ca_file,
		    NULL) != 1)
			log_fatal("cannot load tls_ca_file %s",
			    cfg->delivery.tls_ca_file);
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		log_warn("cannot load the system trust store");
	agent.ssl_ctx = ctx;
}

/*
 * The system trust store's hashed directory is read per handshake
 * (OpenSSL looks a CA up when it verifies): the directories named by
 * SSL_CERT_DIR or OpenSSL's default stay readable, and so do those
 * their entries link into (Debian: /usr/share/ca-certificates). A
 * tls_ca_file was read whole at setup.
 */
static void
agent_allow_trust_store(struct sandbox *sb)
{
	const char *env = getenv(X509_get_default_cert_dir_env());
	char *dirs = xstrdup(env != NULL ? env : X509_get_default_cert_dir());
	char *save = NULL;

	for (char *dir = strtok_r(dirs, ":", &save); dir != NULL;
	    dir = strtok_r(NULL, ":", &save)) {
		DIR *dp = opendir(dir);
		struct dirent *e;

		if (dp == NULL)
			continue;
		sandbox_allow_read(sb, dir);
		while ((e = readdir(dp)) != NULL) {
			char *path, *real;
			struct stat st;

			if (e->d_name[0] == '.')
				continue;
			path = xasprintf("%s/%s", dir, e->d_name);
			real = realpath(path, NULL);
			if (real != NULL && stat(real, &st) == 0 &&
			    S_ISREG(st.st_mode)) {
				char *slash = strrchr(real, '/');

				if (slash != NULL && slash != real) {
					*slash = '\0';
					sandbox_allow_read(sb, real);
				}
			}
			free(real);
			free(path);
		}
		closedir(dp);
	}
	free(dirs);
}

/* Gives up everything but what delivering still needs (sandbox.c). */
static void
agent_sandbox(void)
{
	struct sandbox *sb = sandbox_new();

	if (agent.cfg->delivery.tls_ca_file == NULL)
		agent_allow_trust_store(sb);
	sandbox_allow_connect(sb, (uint16_t)agent.cfg->delivery.smtp_port);
	dns_allow_servers(sb);
	sandbox_enter(sb);
}

static void
housekeeping_cb(evutil_socket_t fd, short what, void *arg)
{
	static unsigned ticks;

	(void)fd;
	(void)what;
	(void)arg;
	++ticks;
	dest_housekeeping();
	if (ticks % READER_CHECK_SEC == 0) {
		int cleared = 0;

		queue_reader_check(agent.queue, &cleared);
		if (queue_is_broken(agent.queue))
			log_fatal("the queue is broken: restarting");
	}
}

static void
agent_drain(struct daemon *d)
{
	(void)d;
	log_debug("draining: %zu job(s) in flight", agent.n_jobs);
	dest_close_idle_all();
	if (agent.n_jobs == 0)
		daemon_exit(&agent.d);
}

static const struct daemon_spec smtp_spec = {
	.name = "smtp",
	.chroot_run_dir = false,
	.drain = agent_drain,
};

int
main(int argc, char **argv)
{
	struct daemon *d = &agent.d;
	struct timeval tick = { HOUSEKEEPING_SEC, 0 };
	char path[4096];

	daemon_init(d, &smtp_spec, argc, argv);
	malloc_keep_freed_heap();
	agent.cfg = d->cfg;
	agent.helo_name = agent.cfg->delivery.helo_name ?
	    agent.cfg->delivery.helo_name : agent.cfg->server.hostname;
	agent.credits_max = agent.cfg->delivery.max_connections;

	agent_open_queue();
	agent_init_tls();
	dns_init();
	agent.ev_housekeeping = event_new(d->base, -1, EV_PERSIST,
	    housekeeping_cb, NULL);
	if (agent.ev_housekeeping == NULL)
		log_fatal("event_new failed");
	evtimer_add(agent.ev_housekeeping, &tick);

	daemon_service_path(d, "qmgr", path, sizeof(path));
	agent.qmgr = ipc_client_new(d->base, path, "smtp", qmgr_msg_cb,
	    qmgr_state_cb, NULL);
	agent_sandbox();
	log_debug("delivery agent ready, %u job credits", agent.credits_max);
	return daemon_run(d);
}
