/*
 * ctl_queue.c - ternctl queue: the mailq-style listing (queue/listing.c,
 * shared with mailq) and `queue show` read the store directly in one
 * read-only transaction (fast: no daemon round trip, no lock on
 * writers); flush, delete, hold and release are requests to tern-qmgr's
 * control socket.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "listing.h"
#include "util.h"

static bool
rcpt_pending(const struct queue_rcpt_info *r)
{
	return r->state == QUEUE_RCPT_QUEUED || r->state == QUEUE_RCPT_DEFERRED;
}

/* The listing is queue_print_listing's, the same as mailq's. */
static int
queue_list_cmd(const struct tern_config *cfg)
{
	struct queue *q = ctl_open_queue(cfg);
	static char buf[1 << 16];

	if (q == NULL)
		return 1;
	setvbuf(stdout, buf, _IOFBF, sizeof(buf));
	if (queue_print_listing(q, stdout) == -1) {
		fflush(stdout);
		fprintf(stderr, "ternctl: listing the queue: %s\n",
		    queue_strerror(queue_last_error()));
		queue_close(q);
		return 1;
	}
	fflush(stdout);
	queue_close(q);
	return 0;
}

static int
queue_show_cmd(const struct tern_config *cfg, const char *idtext)
{
	struct queue *q;
	struct queue_loaded_msg *lm;
	uint64_t qid;
	char t1[32], t2[32];

	if (queue_id_parse(idtext, &qid) == -1) {
		fprintf(stderr, "ternctl: bad queue id '%s'\n", idtext);
		return 2;
	}
	if ((q = ctl_open_queue(cfg)) == NULL)
		return 1;
	if (queue_load(q, qid, &lm) == -1) {
		fprintf(stderr, "ternctl: %s: %s\n", idtext,
		    queue_last_error() == QUEUE_ERR_NOTFOUND ? "not in the queue" :
		    queue_strerror(queue_last_error()));
		queue_close(q);
		return 1;
	}
	ctl_format_time(lm->info.arrival_ms, t1, sizeof(t1));
	printf("queue id: %s\narrival: %s UTC\nsender: <%s>\nsize: %llu\n"
	    "recipients: %u (%u delivered, %u failed, %u with a DSN pending)\n"
	    "held: %s\n", idtext, t1, lm->info.sender,
	    (unsigned long long)lm->info.size, lm->info.n_rcpt,
	    lm->info.n_delivered, lm->info.n_failed, lm->info.n_dsn_pending,
	    lm->info.hold ? "yes" : "no");
	if (lm->info.envid[0])
		printf("envid: %s\n", lm->info.envid);
	if (lm->info.message_id[0])
		printf("message-id: %s\n", lm->info.message_id);
	if (lm->info.auth_user[0])
		printf("auth user: %s\n", lm->info.auth_user);
	if (lm->info.client_addr[0])
		printf("client: %s[%s]\n", lm->info.client_name,
		    lm->info.client_addr);
	for (size_t i = 0; i < lm->n_rcpts; i++) {
		const struct queue_rcpt_info *r = &lm->rcpts[i];

		printf("recipient %u: <%s> %s%s%s, attempts %u", r->index,
		    r->address, queue_rcpt_state_name(r->state),
		    (r->flags & QUEUE_RF_ACTIVE) ? " (active)" : "",
		    (r->flags & QUEUE_RF_DSN_MASK) ? " (DSN pending)" : "",
		    r->attempts);
		if (rcpt_pending(r) && !(r->flags & QUEUE_RF_ACTIVE) &&
		    !lm->info.hold) {
			ctl_format_time(r->next_attempt_ms, t2, sizeof(t2));
			printf(", next attempt %s UTC", t2);
		}
		putchar('\n');
		if (r->last_code != 0 || r->last_text[0]) {
			char reply[QUEUE_TEXT_MAX + 64];

			ctl_format_reply(reply, sizeof(reply), r->last_code,
			    r->last_status, r->last_text);
			printf("  last reply: %s%s%s\n", reply, r->last_host[0] ?
			    " from " : "", r->last_host);
		}
	}
	queue_loaded_free(lm);
	queue_close(q);
	return 0;
}

static int
queue_change_cmd(const struct tern_config *cfg, uint16_t type, const char *id)
{
	struct ipc_out *o;
	uint64_t qid;

	if (id != NULL && id[0] != '\0' && queue_id_parse(id, &qid) == -1) {
		fprintf(stderr, "ternctl: bad queue id '%s'\n", id);
		return 2;
	}
	o = ipc_out_new(type, 1);
	ipc_put_str(o, id != NULL ? id : "");
	return ctl_qmgr_request(cfg, o, NULL);
}

struct id_list {
	char **v;
	size_t n, cap;
};

static void
id_list_add(struct id_list *l, const char *id)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = xstrdup(id);
}

static void
id_list_free(struct id_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* One queue id more, checked; -1 after printing a bad one. */
static int
id_list_add_checked(struct id_list *l, const char *id)
{
	uint64_t qid;

	if (queue_id_parse(id, &qid) == -1) {
		fprintf(stderr, "ternctl: bad queue id '%s'\n", id);
		return -1;
	}
	id_list_add(l, id);
	return 0;
}

/* Queue ids from standard input, the first word of each line, as
 * postsuper -d - reads them. The queue listing itself can be fed in: its
 * header and footer lines (starting with "-"), the indented sender and
 * recipient lines and "Mail queue is empty" are passed over, and the
 * marks after an id ("*" active, "!" held) dropped. */
static int
id_list_read(struct id_list *l, FILE *in)
{
	char line[1024];

	while (fgets(line, sizeof(line), in) != NULL) {
		char *w = line;
		size_t len = strcspn(w, " \t\r\n");

		if (*w == ' ' || *w == '\t' || *w == '-' ||
		    strncmp(w, "Mail queue is empty", 19) == 0)
			continue;

		while (len > 0 && (w[len - 1] == '*' || w[len - 1] == '!'))
			len--;
		if (len == 0)
			continue;
		w[len] = '\0';
		if (id_list_add_checked(l, w) == -1)
			return -1;
	}
	return 0;
}

struct all_arg {
	struct id_list *ids;
	uint16_t type;
};

static int
all_add(void *arg, const struct queue_msg_info *m,
    const struct queue_rcpt_info *rcpts, size_t n_rcpts)
{
	struct all_arg *a = arg;
	char id[QUEUE_ID_LEN + 1];

	(void)rcpts;
	(void)n_rcpts;
	/* hold ALL takes what is not held yet, release ALL what is. */
	if ((a->type == IPC_CTL_HOLD && m->hold) ||
	    (a->type == IPC_CTL_RELEASE && !m->hold))
		return 0;
	queue_id_format(m->qid, id);
	id_list_add(a->ids, id);
	return 0;
}

/* Every message in the queue now (one read-only transaction). */
static int
id_list_all(const struct tern_config *cfg, struct id_list *l, uint16_t type)
{
	struct queue *q = ctl_open_queue(cfg);
	struct all_arg a = { l, type };
	int rc;

	if (q == NULL)
		return -1;
	rc = queue_list(q, all_add, &a);
	if (rc == -1)
		fprintf(stderr, "ternctl: listing the queue: %s\n",
		    queue_strerror(queue_last_error()));
	queue_close(q);
	return rc == -1 ? -1 : 0;
}

/* delete, hold or release of the ids named, those read from stdin ("-")
 * or every message (ALL), one request each over one connection. */
static int
queue_change_many(const struct tern_config *cfg, uint16_t type, int argc,
    char **argv)
{
	struct id_list ids = { 0 };
	bool all = false;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "ALL") == 0 && argc == 1) {
			if (id_list_all(cfg, &ids, type) == -1) {
				id_list_free(&ids);
				return 1;
			}
			all = true;
		} else if (strcmp(argv[i], "-") == 0) {
			if (id_list_read(&ids, stdin) == -1) {
				id_list_free(&ids);
				return 2;
			}
		} else if (id_list_add_checked(&ids, argv[i]) == -1) {
			id_list_free(&ids);
			return 2;
		}
	}
	/* A message that left the queue since the listing is no failure. */
	rc = ctl_qmgr_each(cfg, type, ids.v, ids.n, all);
	id_list_free(&ids);
	return rc;
}

int
cmd_queue(const char *config_path, int argc, char **argv)
{
	struct tern_config *cfg;
	const char *sub = argc > 1 ? argv[1] : "list";
	bool change = strcmp(sub, "delete") == 0 || strcmp(sub, "hold") == 0 ||
	    strcmp(sub, "release") == 0;
	int rc;

	if (!(strcmp(sub, "list") == 0 && argc <= 2) &&
	    !(strcmp(sub, "flush") == 0 && argc <= 3) &&
	    !(strcmp(sub, "show") == 0 && argc == 3) && !(change && argc >= 3)) {
		fprintf(stderr, "usage: ternctl queue [list]\n"
		    "       ternctl queue show ID\n"
		    "       ternctl queue delete|hold|release ID... | - | ALL\n"
		    "       ternctl queue flush [ID]\n");
		return 2;
	}
	if ((cfg = ctl_load_config(config_path)) == NULL)
		return 1;
	if (strcmp(sub, "list") == 0)
		rc = queue_list_cmd(cfg);
	else if (strcmp(sub, "show") == 0)
		rc = queue_show_cmd(cfg, argv[2]);
	else if (strcmp(sub, "flush") == 0)
		rc = queue_change_cmd(cfg, IPC_CTL_FLUSH, argc == 3 ? argv[2] : "");
	else
		rc = queue_change_many(cfg, strcmp(sub, "delete") == 0 ?
		    IPC_CTL_DELETE : strcmp(sub, "hold") == 0 ? IPC_CTL_HOLD :
		    IPC_CTL_RELEASE, argc - 2, argv + 2);
	config_free(cfg);
	return rc;
}
