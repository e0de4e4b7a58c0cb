/*
 * test_cleanup.c - a test double for tern-cleanup, used by the integration
 * tests of tern-smtpd while the real cleanup is written elsewhere. ternd
 * runs it as daemon_dir/tern-cleanup (the tests link it there); it serves
 * run_dir/private/cleanup and tern-smtpd's socket in its jail
 * (unix:cleanup-smtpd) with the IPC_CLEANUP_* conversation of ipc.h.
 *
 * Next to the config file (DIR = dirname of -c):
 *   DIR/test-cleanup.rules   read at every request, one rule a line:
 *       mail PATTERN CODE ENHANCED TEXT...   reply to BEGIN when the sender
 *                                            matches (fnmatch, "" is "<>")
 *       rcpt PATTERN CODE ENHANCED TEXT...   reply to RCPT
 *       end PATTERN CODE ENHANCED TEXT...    reply to END (sender pattern)
 *       end_delay SECONDS                    wait before answering END
 *     Without a matching rule the answer is 250; END then commits.
 *   DIR/test-cleanup.log     one JSON object a line per finished
 *                            transaction: "commit", "refused" or "abort"
 *   DIR/test-cleanup-msgs/QUEUEID.eml   the content of each commit
 * On SIGTERM it stops accepting and exits once its clients are gone.
 * Not installed; no privilege.
 */
#include "autoconfig.h"

#include <errno.h>
#include <event2/event.h>
#include <fnmatch.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "util.h"

struct tx {
	struct ipc_conn *conn;
	uint32_t reqid;
	char *fields;			/* JSON members from BEGIN */
	char *sender;
	char *rcpts;			/* JSON array members */
	char *orcpts;
	char *notify;
	unsigned n_rcpts;
	FILE *data;
	char data_path[PATH_MAX + 128];
	uint64_t size;
	struct event *ev_end;
	struct tx *next;
};

static struct event_base *base;
static char dir[PATH_MAX];
static struct tx *txs;
static unsigned long next_qid;
static int listen_fd = -1, smtpd_fd = -1;
static struct event *ev_accept, *ev_accept_smtpd;
static unsigned n_conns;
static bool draining;

/* Appends s to *json as a JSON string. */
static void
json_str(char **json, const char *s)
{
	size_t n = strlen(*json);
	char *out = xmalloc(n + strlen(s) * 6 + 3);
	size_t o = n;

	memcpy(out, *json, n);
	out[o++] = '"';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)sprintf(out + o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	free(*json);
	*json = out;
}

static void
json_add(char **json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
json_add(char **json, const char *fmt, ...)
{
	va_list ap;
	char *add, *t;

	va_start(ap, fmt);
	add = xvasprintf(fmt, ap);
	va_end(ap);
	t = xasprintf("%s%s", *json, add);
	free(add);
	free(*json);
	*json = t;
}

static void
record(struct tx *t, const char *event, const char *qid, unsigned code)
{
	char path[PATH_MAX + 32], *line = xstrdup("");
	FILE *f;

	json_add(&line, "{\"event\":\"%s\",\"qid\":", event);
	json_str(&line, qid);
	json_add(&line, ",\"code\":%u,\"size\":%llu,\"sender\":", code,
	    (unsigned long long)t->size);
	json_str(&line, t->sender ? t->sender : "");
	json_add(&line, ",\"rcpts\":[%s],\"orcpts\":[%s],\"notify\":[%s]%s}\n",
	    t->rcpts ? t->rcpts : "", t->orcpts ? t->orcpts : "",
	    t->notify ? t->notify : "", t->fields ? t->fields : "");
	snprintf(path, sizeof(path), "%s/test-cleanup.log", dir);
	f = fopen(path, "a");
	if (f != NULL) {
		fputs(line, f);
		fclose(f);
	}
	free(line);
}

/* The first rule of kind for subject, or NULL; *delay for end_delay. */
static int
find_rule(const char *kind, const char *subject, unsigned *code, char *enh,
    char *text, double *delay)
{
	char path[PATH_MAX + 32], line[1024];
	int found = 0;
	FILE *f;

	*delay = 0;
	snprintf(path, sizeof(path), "%s/test-cleanup.rules", dir);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char k[32], pat[512], e[32];
		int off = 0;

		line[strcspn(line, "\r\n")] = '\0';
		if (sscanf(line, "end_delay %lf", delay) == 1)
			continue;
		if (found || sscanf(line, "%31s %511s %u %31s %n", k, pat, code, e,
		    &off) < 4 || strcmp(k, kind) != 0)
			continue;
		if (fnmatch(pat, *subject ? subject : "<>", 0) != 0)
			continue;
		strcpy(enh, e);
		snprintf(text, 512, "%s", line + off);
		found = 1;
	}
	fclose(f);
	return found;
}

static void
reply(struct ipc_conn *c, uint32_t reqid, unsigned code, const char *enh,
    const char *text, const char *qid)
{
	struct ipc_out *o = ipc_out_new(IPC_CLEANUP_REPLY, reqid);

	ipc_put_u16(o, (uint16_t)code);
	ipc_put_str(o, enh);
	ipc_put_str(o, text);
	ipc_put_str(o, qid);
	ipc_conn_send(c, o);
}

static struct tx *
tx_find(struct ipc_conn *c, uint32_t reqid)
{
	for (struct tx *t = txs; t != NULL; t = t->next)
		if (t->conn == c && t->reqid == reqid)
			return t;
	return NULL;
}

static void
tx_free(struct tx *t)
{
	for (struct tx **p = &txs; *p != NULL; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			break;
		}
	if (t->data != NULL) {
		fclose(t->data);
		unlink(t->data_path);
	}
	if (t->ev_end != NULL)
		event_free(t->ev_end);
	free(t->fields);
	free(t->sender);
	free(t->rcpts);
	free(t->orcpts);
	free(t->notify);
	free(t);
}

static void
tx_end(struct tx *t)
{
	unsigned code;
	char enh[32], text[512], qid[32], path[PATH_MAX + 64];
	double delay;

	if (find_rule("end", t->sender, &code, enh, text, &delay) && code >= 300) {
		reply(t->conn, t->reqid, code, enh, text, "");
		record(t, "refused", "", code);
		tx_free(t);
		return;
	}
	snprintf(qid, sizeof(qid), "%08lX%04X", ++next_qid,
	    (unsigned)getpid() & 0xffff);
	fflush(t->data);
	snprintf(path, sizeof(path), "%s/test-cleanup-msgs/%s.eml", dir, qid);
	rename(t->data_path, path);
	fclose(t->data);
	t->data = NULL;
	record(t, "commit", qid, 250);
	reply(t->conn, t->reqid, 250, "2.0.0", "Ok", qid);
	tx_free(t);
}

static void
end_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tx_end(arg);
}

static void
on_msg(struct ipc_conn *c, struct ipc_msg *m, void *arg)
{
	struct tx *t = tx_find(c, m->reqid);
	unsigned code;
	char enh[32], text[512];
	double delay;

	(void)arg;
	switch (m->type) {
	case IPC_CLEANUP_BEGIN: {
		const char *listener, *host, *addr, *helo, *user, *tls, *sender,
		    *envid;
		uint8_t source, body, ret;
		bool trusted, utf8;
		uint64_t size;

		if (t != NULL || ipc_get_u8(m, &source) || ipc_get_str(m, &listener) ||
		    ipc_get_str(m, &host) || ipc_get_str(m, &addr) ||
		    ipc_get_str(m, &helo) || ipc_get_str(m, &user) ||
		    ipc_get_bool(m, &trusted) || ipc_get_str(m, &tls) ||
		    ipc_get_str(m, &sender) || ipc_get_u8(m, &body) ||
		    ipc_get_bool(m, &utf8) || ipc_get_u64(m, &size) ||
		    ipc_get_u8(m, &ret) || ipc_get_str(m, &envid) ||
		    ipc_msg_end(m)) {
			ipc_conn_protocol_error(c, "bad BEGIN");
			return;
		}
		t = xcalloc(1, sizeof(*t));
		t->conn = c;
		t->reqid = m->reqid;
		t->sender = xstrdup(sender);
		t->fields = xstrdup("");
		json_add(&t->fields, ",\"source\":%u,\"listener\":", source);
		json_str(&t->fields, listener);
		json_add(&t->fields, ",\"client_address\":");
		json_str(&t->fields, addr);
		json_add(&t->fields, ",\"helo\":");
		json_str(&t->fields, helo);
		json_add(&t->fields, ",\"auth\":");
		json_str(&t->fields, user);
		json_add(&t->fields, ",\"trusted\":%s,\"tls\":", trusted ? "true"
		    : "false");
		json_str(&t->fields, tls);
		json_add(&t->fields, ",\"body\":%u,\"smtputf8\":%s,"
		    "\"declared_size\":%llu,\"ret\":%u,\"envid\":", body,
		    utf8 ? "true" : "false", (unsigned long long)size, ret);
		json_str(&t->fields, envid);
		t->rcpts = xstrdup("");
		t->orcpts = xstrdup("");
		t->notify = xstrdup("");
		snprintf(t->data_path, sizeof(t->data_path),
		    "%s/test-cleanup-msgs/.tmp.%u.%p", dir, m->reqid, (void *)t);
		t->data = fopen(t->data_path, "w");
		if (t->data == NULL)
			log_fatal("%s: %s", t->data_path, strerror(errno));
		t->next = txs;
		txs = t;
		if (find_rule("mail", sender, &code, enh, text, &delay) &&
		    code >= 300) {
			reply(c, m->reqid, code, enh, text, "");
			record(t, "refused", "", code);
			tx_free(t);
			return;
		}
		reply(c, m->reqid, 250, "2.1.0", "Ok", "");
		return;
	}
	case IPC_CLEANUP_RCPT: {
		const char *address, *orcpt;
		uint8_t notify;

		if (t == NULL || ipc_get_str(m, &address) ||
		    ipc_get_str(m, &orcpt) || ipc_get_u8(m, &notify) ||
		    ipc_msg_end(m)) {
			ipc_conn_protocol_error(c, "bad RCPT");
			return;
		}
		if (find_rule("rcpt", address, &code, enh, text, &delay) &&
		    code >= 300) {
			reply(c, m->reqid, code, enh, text, "");
			return;
		}
		if (t->n_rcpts++ > 0) {
			json_add(&t->rcpts, ",");
			json_add(&t->orcpts, ",");
			json_add(&t->notify, ",");
		}
		json_str(&t->rcpts, address);
		json_str(&t->orcpts, orcpt);
		json_add(&t->notify, "%u", notify);
		reply(c, m->reqid, 250, "2.1.5", "Ok", "");
		return;
	}
	case IPC_CLEANUP_DATA: {
		const void *p;
		size_t n;

		if (t == NULL || ipc_get_data(m, &p, &n) || ipc_msg_end(m) ||
		    n > IPC_DATA_CHUNK) {
			ipc_conn_protocol_error(c, "bad DATA");
			return;
		}
		fwrite(p, 1, n, t->data);
		t->size += n;
		return;
	}
	case IPC_CLEANUP_END:
		if (t == NULL || ipc_msg_end(m)) {
			ipc_conn_protocol_error(c, "bad END");
			return;
		}
		find_rule("end", t->sender, &code, enh, text, &delay);
		if (delay > 0) {
			struct timeval tv = { (time_t)delay,
			    (suseconds_t)((delay - (double)(time_t)delay) * 1e6) };

			t->ev_end = evtimer_new(base, end_timer_cb, t);
			evtimer_add(t->ev_end, &tv);
			return;
		}
		tx_end(t);
		return;
	case IPC_CLEANUP_ABORT:
		if (t != NULL) {
			record(t, "abort", "", 0);
			tx_free(t);
		}
		return;
	default:
		ipc_conn_protocol_error(c, "unexpected message type %u", m->type);
	}
}

static void
on_close(struct ipc_conn *c, const char *why, void *arg)
{
	(void)why;
	(void)arg;
	for (struct tx *t = txs, *next; t != NULL; t = next) {
		next = t->next;
		if (t->conn == c) {
			record(t, "abort", "", 0);
			tx_free(t);
		}
	}
	ipc_conn_free(c);
	/* Draining: the last client gone (smtpd exits after its sessions). */
	if (--n_conns == 0 && draining)
		event_base_loopexit(base, NULL);
}

static void
accept_cb(evutil_socket_t fd, short what, void *arg)
{
	int c;

	(void)what;
	(void)arg;
	c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c == -1)
		return;
	ipc_conn_new(base, c, "cleanup", on_msg, on_close, NULL);
	n_conns++;
}

static void
sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	/* Like a real queue writer: finish what clients still send. */
	draining = true;
	event_del(ev_accept);
	if (ev_accept_smtpd != NULL)
		event_del(ev_accept_smtpd);
	if (n_conns == 0)
		event_base_loopexit(base, NULL);
}

int
main(int argc, char **argv)
{
	const char *fds = getenv("TERN_FDS"), *config = NULL, *p;
	char path[PATH_MAX + 32], *copy;
	struct event *ev;

	log_init("cleanup", LOG_TARGET_STDERR, false);
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			config = argv[++i];
	if (config == NULL)
		log_fatal("usage: tern-cleanup -c config (the test double)");
	copy = xstrdup(config);
	tern_strlcpy(dir, dirname(copy), sizeof(dir));
	free(copy);
	if (fds != NULL && (p = strstr(fds, "unix:cleanup=")) != NULL)
		listen_fd = atoi(p + 13);
	if (listen_fd < 0)
		log_fatal("no unix:cleanup socket in TERN_FDS");
	if ((p = strstr(fds, "unix:cleanup-smtpd=")) != NULL)
		smtpd_fd = atoi(p + 19);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGPIPE, SIG_IGN);
	snprintf(path, sizeof(path), "%s/test-cleanup-msgs", dir);
	mkdir(path, 0755);
	base = event_base_new();
	ev_accept = event_new(base, listen_fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	event_add(ev_accept, NULL);
	if (smtpd_fd >= 0) {
		ev_accept_smtpd = event_new(base, smtpd_fd, EV_READ | EV_PERSIST,
		    accept_cb, NULL);
		event_add(ev_accept_smtpd, NULL);
	}
	ev = evsignal_new(base, SIGTERM, sigterm_cb, NULL);
	event_add(ev, NULL);
	log_info("test double serving cleanup");
	event_base_dispatch(base);
	return 0;
}
