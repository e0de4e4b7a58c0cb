/*
 * test_qmgr.c - a test double of tern-qmgr for the delivery agent's tests
 * (the real qmgr is written in parallel). Installed as tern-qmgr in a
 * test's daemon_dir, it serves run_dir/private/qmgr like the real one,
 * takes DELIVERY_READY credits from tern-smtp agents, and hands out jobs
 * that the test appends as JSON lines to qmgr-jobs.jsonl beside the
 * config file:
 *   {"qid": "0190F3A1C2B40123", "domain": "example.test",
 *    "rcpts": ["a@example.test"]}   (rcpts, sender, size, body, smtputf8,
 *   ret, envid, arrival_ms default to the queued message's own)
 * Every DELIVERY_RESULT is written as one JSON line to
 * qmgr-results.jsonl: {"job": N, "qid": "...", "results": [{"index": 0,
 * "code": 250, "stage": "dot", "status": "2.0.0", "text": "...",
 * "host": "...",
 * "addr": "...", "tls": "...", "ms": 12}]}. It writes nothing to the queue.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "daemon.h"
#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "util.h"

struct agent_conn {
	struct ipc_conn *conn;
	unsigned credits;
	unsigned in_flight;
};

struct pending_job {
	STAILQ_ENTRY(pending_job) entry;
	struct ipc_out *out;		/* reqid set at dispatch */
	char qid[17];
};

static struct {
	struct daemon d;
	struct evconnlistener *listener;
	struct agent_conn **agents;
	size_t n_agents;
	size_t next_agent;
	STAILQ_HEAD(, pending_job) pending;
	char jobs_path[4096];
	char results_path[4096];
	long jobs_offset;
	uint32_t next_job_id;
	struct queue *queue;
	struct event *ev_poll;
} tq;

static void
results_write(json_t *obj)
{
	FILE *f = fopen(tq.results_path, "a");
	char *s = json_dumps(obj, JSON_COMPACT);

	if (f == NULL)
		log_fatal("%s: %s", tq.results_path, strerror(errno));
	fprintf(f, "%s\n", s);
	fclose(f);
	free(s);
	json_decref(obj);
}

static void
dispatch(void)
{
	struct pending_job *p;

	while ((p = STAILQ_FIRST(&tq.pending)) != NULL) {
		struct agent_conn *a = NULL;

		for (size_t k = 0; k < tq.n_agents && a == NULL; k++) {
			struct agent_conn *c = tq.agents[(tq.next_agent + k) %
			    tq.n_agents];

			if (c->credits > 0)
				a = c;
		}
		if (a == NULL)
			return;
		tq.next_agent++;
		STAILQ_REMOVE_HEAD(&tq.pending, entry);
		a->credits--;
		a->in_flight++;
		ipc_conn_send(a->conn, p->out);
		free(p);
	}
}

static const char *
jstr(json_t *o, const char *key, const char *def)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : def;
}

static void
job_from_json(const char *line)
{
	json_error_t err;
	json_t *o = json_loads(line, 0, &err), *rcpts, *v;
	struct queue_loaded_msg *m = NULL;
	struct pending_job *p;
	const char *domain;
	uint64_t qid;
	size_t n;

	if (o == NULL || queue_id_parse(jstr(o, "qid", ""), &qid) == -1)
		log_fatal("bad job line: %s", line);
	if (tq.queue == NULL) {
		struct queue_options opt;

		queue_options_from_config(&opt, tq.d.cfg, QUEUE_OPEN_READONLY);
		tq.queue = queue_open(&opt);
		if (tq.queue == NULL)
			log_fatal("cannot open the queue");
	}
	if (queue_load(tq.queue, qid, &m) == -1)
		log_fatal("job for %s: message not in the queue", jstr(o, "qid", ""));
	rcpts = json_object_get(o, "rcpts");
	n = json_is_array(rcpts) ? json_array_size(rcpts) : m->n_rcpts;
	domain = jstr(o, "domain", NULL);
	if (domain == NULL) {
		const char *at = strrchr(m->rcpts[0].address, '@');

		domain = at ? at + 1 : "";
	}
	p = xcalloc(1, sizeof(*p));
	queue_id_format(qid, p->qid);
	p->out = ipc_out_new(IPC_DELIVERY_JOB, ++tq.next_job_id);
	ipc_put_str(p->out, p->qid);
	ipc_put_str(p->out, jstr(o, "sender", m->info.sender));
	ipc_put_str(p->out, domain);
	v = json_object_get(o, "body");
	ipc_put_u8(p->out, json_is_integer(v) ? (uint8_t)json_integer_value(v) :
	    m->info.body);
	v = json_object_get(o, "smtputf8");
	ipc_put_bool(p->out, json_is_boolean(v) ? json_is_true(v) :
	    m->info.smtputf8);
	v = json_object_get(o, "size");
	ipc_put_u64(p->out, json_is_integer(v) ? (uint64_t)json_integer_value(v) :
	    m->info.size);
	ipc_put_u8(p->out, m->info.ret);
	ipc_put_str(p->out, jstr(o, "envid", m->info.envid));
	ipc_put_i64(p->out, m->info.arrival_ms);
	ipc_put_u32(p->out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		if (json_is_array(rcpts)) {
			ipc_put_u32(p->out, (uint32_t)i);
			ipc_put_str(p->out, json_string_value(json_array_get(rcpts, i)));
			ipc_put_str(p->out, "");
			ipc_put_u8(p->out, 0);
		} else {
			ipc_put_u32(p->out, m->rcpts[i].index);
			ipc_put_str(p->out, m->rcpts[i].address);
			ipc_put_str(p->out, m->rcpts[i].orcpt);
			ipc_put_u8(p->out, m->rcpts[i].notify);
		}
	}
	STAILQ_INSERT_TAIL(&tq.pending, p, entry);
	queue_loaded_free(m);
	json_decref(o);
}

/* Picks up lines the test appended since the last look. */
static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	(void)fd;
	(void)what;
	(void)arg;
	f = fopen(tq.jobs_path, "r");
	if (f == NULL)
		return;
	fseek(f, tq.jobs_offset, SEEK_SET);
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break;		/* not complete yet */
		tq.jobs_offset += n;
		if (n > 1)
			job_from_json(line);
	}
	free(line);
	fclose(f);
	dispatch();
}

static void
agent_close_cb(struct ipc_conn *c, const char *why, void *arg)
{
	struct agent_conn *a = arg;

	log_info("agent gone (%s), %u job(s) in flight", why, a->in_flight);
	if (a->in_flight > 0)
		results_write(json_pack("{s:i}", "lost", (int)a->in_flight));
	for (size_t i = 0; i < tq.n_agents; i++)
		if (tq.agents[i] == a) {
			memmove(&tq.agents[i], &tq.agents[i + 1],
			    (tq.n_agents - i - 1) * sizeof(*tq.agents));
			tq.n_agents--;
			break;
		}
	ipc_conn_free(c);
	free(a);
}

static void
agent_msg_cb(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct agent_conn *a = arg;
	json_t *res, *arr;
	uint32_t n;

	if (m->type == IPC_DELIVERY_READY) {
		uint32_t credits;

		if (ipc_get_u32(m, &credits) == -1 || ipc_msg_end(m) == -1) {
			ipc_conn_protocol_error(c, "bad DELIVERY_READY");
			return;
		}
		a->credits += credits;
		dispatch();
		return;
	}
	if (m->type != IPC_DELIVERY_RESULT || ipc_get_u32(m, &n) == -1) {
		ipc_conn_protocol_error(c, "unexpected message");
		return;
	}
	arr = json_array();
	for (uint32_t i = 0; i < n; i++) {
		const char *status, *text, *host, *addr, *tls;
		uint32_t index;
		uint16_t code;
		uint8_t stage;
		uint64_t ms;

		if (ipc_get_u32(m, &index) == -1 || ipc_get_u16(m, &code) == -1 ||
		    ipc_get_u8(m, &stage) == -1 ||
		    delivery_stage_name(stage) == NULL ||
		    ipc_get_str(m, &status) == -1 || ipc_get_str(m, &text) == -1 ||
		    ipc_get_str(m, &host) == -1 || ipc_get_str(m, &addr) == -1 ||
		    ipc_get_str(m, &tls) == -1 || ipc_get_u64(m, &ms) == -1) {
			json_decref(arr);
			ipc_conn_protocol_error(c, "bad DELIVERY_RESULT");
			return;
		}
		json_array_append_new(arr, json_pack("{s:i,s:i,s:s,s:s,s:s,s:s,s:s,"
		    "s:s,s:I}", "index", (int)index, "code", (int)code, "stage",
		    delivery_stage_name(stage), "status", status, "text", text,
		    "host", host, "addr", addr, "tls", tls, "ms", (json_int_t)ms));
	}
	if (ipc_msg_end(m) == -1) {
		json_decref(arr);
		ipc_conn_protocol_error(c, "DELIVERY_RESULT with bytes left over");
		return;
	}
	res = json_pack("{s:i,s:o}", "job", (int)m->reqid, "results", arr);
	results_write(res);
	a->in_flight--;
	a->credits++;		/* the credit comes back with the result */
	dispatch();
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct agent_conn *a = xcalloc(1, sizeof(*a));

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	a->conn = ipc_conn_new(tq.d.base, fd, "qmgr", agent_msg_cb, agent_close_cb,
	    a);
	tq.agents = xreallocarray(tq.agents, tq.n_agents + 1, sizeof(*tq.agents));
	tq.agents[tq.n_agents++] = a;
}

static void
tq_drain(struct daemon *d)
{
	evconnlistener_free(tq.listener);
	daemon_exit(d);
}

static const struct daemon_spec tq_spec = {
	.name = "qmgr",
	.drain = tq_drain,
};

int
main(int argc, char **argv)
{
	struct timeval tick = { 0, 50 * 1000 };
	char *copy, *dir;
	int fd;

	daemon_init(&tq.d, &tq_spec, argc, argv);
	STAILQ_INIT(&tq.pending);
	copy = xstrdup(tq.d.cfg->path);
	dir = dirname(copy);
	snprintf(tq.jobs_path, sizeof(tq.jobs_path), "%s/qmgr-jobs.jsonl", dir);
	snprintf(tq.results_path, sizeof(tq.results_path),
	    "%s/qmgr-results.jsonl", dir);
	free(copy);
	fd = daemon_socket(&tq.d, "unix:qmgr");
	if (fd == -1)
		log_fatal("no unix:qmgr socket from the master");
	tq.listener = evconnlistener_new(tq.d.base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (tq.listener == NULL)
		log_fatal("evconnlistener_new failed");
	tq.ev_poll = event_new(tq.d.base, -1, EV_PERSIST, poll_cb, NULL);
	evtimer_add(tq.ev_poll, &tick);
	log_info("test double of tern-qmgr serving jobs from %s", tq.jobs_path);
	return daemon_run(&tq.d);
}
