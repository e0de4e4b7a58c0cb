/*
 * sendmail.c - the sendmail-compatible command (and mailq, newaliases by
 * argv[0]): reads a message on stdin, hands it to tern-cleanup over the
 * world-connectable socket run_dir/public/sendmail (cleanup learns who we
 * are from SO_PEERCRED, never from us), and exits 0 only once the
 * message is durably queued. When the daemons are down it writes the
 * message durably into queue_dir/maildrop for tern-pickup instead.
 *
 * Runs as the invoking user. Installed setgid tern-drop when that group
 * exists: the group is raised only while the maildrop file is created
 * and given up for good when the user picks another config (-C or
 * $TERN_CONFIG). Exit codes are sendmail's (sysexits.h); see sendmail(1).
 */
#include "autoconfig.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "ipc.h"
#include "log.h"
#include "mailq.h"
#include "maildrop.h"
#include "message.h"
#include "peercred.h"
#include "queue.h"
#include "smtp_stdio.h"
#include "submit.h"
#include "util.h"

#define SUBMIT_TIMEOUT_MS	(5 * 60 * 1000)

struct sm_options {
	const char *config;		/* -C */
	const char *sender;		/* -f / -r */
	const char *full_name;		/* -F */
	bool extract;			/* -t */
	bool ignore_dots;		/* -i, -oi */
	bool verbose;			/* -v */
	char mode;			/* 'm' send, 'p' list, 'i' aliases */
	uint8_t notify;			/* -N */
	uint8_t ret;			/* -R */
	const char *envid;		/* -V (sendmail 8's ENVID) */
	int body;			/* -B: -1 auto */
};

static gid_t drop_gid;			/* the setgid group, or -1 */
static bool started_setgid;

/*
 * LeakSanitizer cannot inspect a setgid process (no ptrace) and would
 * turn a clean exit into a failure: it stays off there (sanitizer builds).
 */
int __lsan_is_turned_off(void);
int
__lsan_is_turned_off(void)
{
	return started_setgid;
}

static void TERN_NORETURN TERN_PRINTF(2, 3)
die(int code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "sendmail: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void TERN_NORETURN
usage(void)
{
	fprintf(stderr,
	    "usage: sendmail [-C config] [-t] [-i] [-oi] [-f sender] [-F name]\n"
	    "                [-N dsn] [-R full|hdrs] [-V envid] [-bm] [recipient ...]\n"
	    "       sendmail -bp    (or mailq)\n");
	exit(EX_USAGE);
}

/* Gives up the setgid group for good (a config the user chose). */
static void
drop_setgid_forever(void)
{
	gid_t g = getgid();

	if (setresgid(g, g, g) == -1)
		die(EX_OSERR, "cannot give up the setgid group: %s", strerror(errno));
	drop_gid = (gid_t)-1;
}

/* True for a config file owned by root that only root can change. */
static bool
is_root_config(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == 0 &&
	    (sb.st_mode & 022) == 0;
}

/* -N never | success,failure,delay */
static uint8_t
parse_notify(const char *s)
{
	char *copy = xstrdup(s), *save = NULL, *w;
	uint8_t bits = 0;

	for (w = strtok_r(copy, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
		if (is_ascii_strcaseeq(w, "never"))
			bits |= CLEANUP_NOTIFY_NEVER;
		else if (is_ascii_strcaseeq(w, "success"))
			bits |= CLEANUP_NOTIFY_SUCCESS;
		else if (is_ascii_strcaseeq(w, "failure"))
			bits |= CLEANUP_NOTIFY_FAILURE;
		else if (is_ascii_strcaseeq(w, "delay"))
			bits |= CLEANUP_NOTIFY_DELAY;
		else {
			free(copy);
			die(EX_USAGE, "-N: unknown DSN notification '%s'", w);
		}
	}
	free(copy);
	if ((bits & CLEANUP_NOTIFY_NEVER) && bits != CLEANUP_NOTIFY_NEVER)
		die(EX_USAGE, "-N: 'never' cannot be combined with other values");
	return bits;
}

static void
parse_options(int argc, char **argv, struct sm_options *o)
{
	int ch;

	/* Options Postfix's sendmail(1) accepts are accepted; those that do
	 * not apply to tern are ignored, as Postfix ignores them. */
	while ((ch = getopt(argc, argv, "A:B:b:C:d:F:f:Gh:IiL:N:nO:o:p:q::R:r:tUV:vX:")) != -1) {
		switch (ch) {
		case 'b':
			if (strcmp(optarg, "m") == 0)
				o->mode = 'm';
			else if (strcmp(optarg, "p") == 0)
				o->mode = 'p';
			else if (strcmp(optarg, "i") == 0)
				o->mode = 'i';
			else if (strcmp(optarg, "s") == 0)
				o->mode = 's';
			else
				die(EX_USAGE, "-b%s is not supported", optarg);
			break;
		case 'B':
			if (is_ascii_strcaseeq(optarg, "8BITMIME"))
				o->body = CLEANUP_BODY_8BITMIME;
			else if (is_ascii_strcaseeq(optarg, "7BIT"))
				o->body = CLEANUP_BODY_7BIT;
			else
				die(EX_USAGE, "-B: body type must be 7BIT or 8BITMIME");
			break;
		case 'C':
			o->config = optarg;
			break;
		case 'F':
			o->full_name = optarg;
			break;
		case 'f':
		case 'r':
			o->sender = optarg;
			break;
		case 'I':
			o->mode = 'i';
			break;
		case 'i':
			o->ignore_dots = true;
			break;
		case 'N':
			o->notify = parse_notify(optarg);
			break;
		case 'o':
			/* -oi is -i; -oA, -om, -o7, -o8 and the rest are ignored. */
			if (strcmp(optarg, "i") == 0)
				o->ignore_dots = true;
			break;
		case 'R':
			if (is_ascii_strcaseeq(optarg, "full"))
				o->ret = CLEANUP_RET_FULL;
			else if (is_ascii_strcaseeq(optarg, "hdrs"))
				o->ret = CLEANUP_RET_HDRS;
			else
				die(EX_USAGE, "-R: must be full or hdrs");
			break;
		case 't':
			o->extract = true;
			break;
		case 'V':
			if (strlen(optarg) > 100 || !is_sm_address(optarg) ||
			    strchr(optarg, '@') != NULL)
				die(EX_USAGE, "-V: bad envelope id");
			o->envid = optarg;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'q':
			/* tern schedules its own queue: ternctl queue flush. */
			exit(EX_OK);
		case 'A': case 'd': case 'G': case 'L': case 'n':
		case 'O': case 'p': case 'U': case 'X':
			break;
		case 'h':
			/* -h N: the hop count (Postfix ignores it too); it takes
			 * its argument, which is not a recipient. */
			break;
		default:
			usage();
		}
	}
}

/* The envelope sender: -f as given (checked), else user@hostname. */
static char *
envelope_sender(const struct sm_options *o, const struct peer_identity *me,
    const struct tern_config *cfg)
{
	char buf[SM_ADDRESS_MAX + 64];
	const char *s = o->sender;
	size_t len;

	if (s == NULL) {
		peercred_default_sender(me, cfg->server.hostname, buf, sizeof(buf));
		if (!is_sm_address(buf))
			die(EX_NOUSER, "cannot make a sender address for uid %lu",
			    (unsigned long)me->uid);
		return xstrdup(buf);
	}
	len = strlen(s);
	if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
		s++;
		len -= 2;
	}
	if (len == 0)
		return xstrdup("");	/* -f '<>': the null sender */
	if (len > SM_ADDRESS_MAX)
		die(EX_USAGE, "-f: sender address is longer than %d bytes",
		    SM_ADDRESS_MAX);
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!is_sm_address(buf))
		die(EX_USAGE, "-f: not a valid address (no blanks, brackets or "
		    "control characters)");
	return sm_qualify(buf, cfg->server.hostname);
}

/* The full name for From: -F, else the first GECOS field if it is safe. */
static char *
full_name(const struct sm_options *o, const struct peer_identity *me)
{
	struct passwd *pw;
	char *name;

	if (o->full_name != NULL) {
		if (strlen(o->full_name) > SM_NAME_MAX)
			die(EX_USAGE, "-F: the full name is longer than %d bytes",
			    SM_NAME_MAX);
		for (const char *p = o->full_name; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				die(EX_USAGE, "-F: control characters are not allowed");
		return xstrdup(o->full_name);
	}
	pw = getpwuid(me->uid);
	if (pw == NULL || pw->pw_gecos == NULL)
		return NULL;
	name = xstrndup(pw->pw_gecos, strcspn(pw->pw_gecos, ","));
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			free(name);
			return NULL;
		}
	if (strlen(name) > SM_NAME_MAX || name[0] == '\0') {
		free(name);
		return NULL;
	}
	return name;
}

/* Reads stdin into content (CRLF lines), refusing NUL and oversize. */
static void
read_message(const struct sm_options *o, uint64_t limit, struct sm_buf *content,
    bool *eightbit)
{
	struct sm_normalizer n;
	char buf[65536];
	size_t r;

	sm_normalizer_init(&n, !o->ignore_dots);
	while ((r = fread(buf, 1, sizeof(buf), stdin)) > 0) {
		if (sm_normalizer_feed(&n, buf, r, content) == -1)
			die(EX_DATAERR, "the message contains a NUL byte; refused");
		if (content->len > limit)
			die(EX_DATAERR, "the message is larger than "
			    "message_size_limit (%llu bytes)", (unsigned long long)limit);
		if (n.ended)
			break;
	}
	if (ferror(stdin))
		die(EX_IOERR, "reading the message: %s", strerror(errno));
	sm_normalizer_finish(&n, content);
	if (content->len > limit)
		die(EX_DATAERR, "the message is larger than message_size_limit "
		    "(%llu bytes)", (unsigned long long)limit);
	*eightbit = n.eightbit;
	sm_normalizer_free(&n);
	if (content->data == NULL)
		sm_buf_append(content, "", 0);
}

/* Adds command-line recipients (each may be a list "a, b"). */
static void
add_arg_recipients(int argc, char **argv, struct sm_list *rcpts)
{
	for (int i = 0; i < argc; i++) {
		const char *why = NULL;

		if (strlen(argv[i]) > 10 * SM_ADDRESS_MAX)
			die(EX_USAGE, "recipient argument is too long");
		if (sm_parse_address_list(argv[i], strlen(argv[i]), rcpts, &why) == -1)
			die(EX_USAGE, "bad recipient address: %s", why);
	}
}

/* ---- delivery to cleanup or the maildrop ---- */

static int
report_submission(const struct sm_options *o, const struct maildrop_msg *m,
    enum submit_outcome oc, const struct submit_result *res)
{
	for (size_t i = 0; i < res->n_rcpt; i++)
		if (res->rcpt[i].code >= 500)
			fprintf(stderr, "sendmail: <%s>: %u %s %s\n", m->rcpts[i],
			    res->rcpt[i].code, res->rcpt[i].status, res->rcpt[i].text);
	switch (oc) {
	case SUBMIT_COMMITTED:
		if (o->verbose)
			printf("queued as %s\n", res->end.qid);
		return EX_OK;
	case SUBMIT_TEMPFAIL: {
		const struct submit_reply *r = res->end.code ? &res->end :
		    res->begin.code >= 400 ? &res->begin : NULL;

		for (size_t i = 0; r == NULL && i < res->n_rcpt; i++)
			if (res->rcpt[i].code >= 400 && res->rcpt[i].code < 500)
				r = &res->rcpt[i];
		if (r != NULL)
			fprintf(stderr, "sendmail: %u %s %s\n", r->code, r->status,
			    r->text);
		return EX_TEMPFAIL;
	}
	case SUBMIT_REFUSED:
		if (res->begin.code >= 500) {
			fprintf(stderr, "sendmail: %u %s %s\n", res->begin.code,
			    res->begin.status, res->begin.text);
			return EX_NOPERM;
		}
		if (res->end.code >= 500) {
			fprintf(stderr, "sendmail: %u %s %s\n", res->end.code,
			    res->end.status, res->end.text);
			return EX_DATAERR;
		}
		return EX_NOUSER;
	case SUBMIT_LOST:
		break;
	}
	return EX_TEMPFAIL;
}

/* Writes m into the maildrop with the setgid group raised; 0 or -1. */
static int
drop_file(const struct maildrop_msg *m, char *name, size_t size, void *arg)
{
	const struct tern_config *cfg = arg;
	char *dir = xasprintf("%s/maildrop", cfg->server.queue_dir);
	int rc, saved;

	if (drop_gid != (gid_t)-1 && setegid(drop_gid) == -1)
		die(EX_OSERR, "cannot take the maildrop group: %s", strerror(errno));
	rc = maildrop_write(dir, m, name, size);
	saved = errno;
	if (drop_gid != (gid_t)-1 && setegid(getgid()) == -1)
		die(EX_OSERR, "cannot give up the maildrop group: %s", strerror(errno));
	if (rc == -1)
		fprintf(stderr, "sendmail: the mail system is not running and the "
		    "maildrop %s cannot take the message: %s\n", dir,
		    strerror(saved));
	free(dir);
	return rc;
}

static int
write_maildrop(const struct tern_config *cfg, const struct maildrop_msg *m,
    const struct sm_options *o)
{
	char name[96];

	if (drop_file(m, name, sizeof(name), (void *)cfg) == -1)
		return EX_TEMPFAIL;
	if (o->verbose)
		printf("tern is not running: kept in %s/maildrop/%s until it "
		    "starts\n", cfg->server.queue_dir, name);
	return EX_OK;
}

static int
send_message(const struct tern_config *cfg, const struct maildrop_msg *m,
    const struct sm_options *o)
{
	char *path = xasprintf("%s/public/sendmail", cfg->server.run_dir);
	struct submit_conn *c;
	struct submit_result res;
	enum submit_outcome oc;
	int code;

	c = submit_connect(path, "sendmail", SUBMIT_TIMEOUT_MS);
	free(path);
	if (c == NULL)
		return write_maildrop(cfg, m, o);
	/* Cleanup records who we are from the socket; we claim nothing. */
	oc = submit_message(c, CLEANUP_SOURCE_SENDMAIL, "", m, &res);
	submit_close(c);
	/*
	 * Nothing was acknowledged: the daemon went away, or was already
	 * going down (421 to BEGIN). Keep the message for pickup. A
	 * connection lost after END may have been committed: a duplicate
	 * is possible then, a loss is not. Any other reply is cleanup's
	 * verdict and is reported as such.
	 */
	if (oc == SUBMIT_LOST || res.begin.code == 421) {
		submit_result_free(&res);
		return write_maildrop(cfg, m, o);
	}
	code = report_submission(o, m, oc, &res);
	submit_result_free(&res);
	return code;
}

/* ---- mailq ---- */

static int
list_queue(const struct tern_config *cfg)
{
	struct queue_options qo;
	struct queue *q;
	char *dir;
	int rc;

	queue_options_from_config(&qo, cfg, QUEUE_OPEN_READONLY);
	q = queue_open(&qo);
	if (q == NULL && queue_last_error() != QUEUE_ERR_NOTFOUND) {
		fprintf(stderr, "mailq: cannot read the queue in %s: %s\n",
		    cfg->server.queue_dir, queue_strerror(queue_last_error()));
		return access(cfg->server.queue_dir, R_OK | X_OK) == 0 ?
		    EX_UNAVAILABLE : EX_NOPERM;
	}
	dir = xasprintf("%s/maildrop", cfg->server.queue_dir);
	/* No queue yet (tern never ran): only the maildrop can hold mail. */
	rc = mailq_print(q, dir, stdout);
	free(dir);
	if (q != NULL)
		queue_close(q);
	if (rc == -1) {
		fprintf(stderr, "mailq: reading the queue: %s\n",
		    queue_strerror(queue_last_error()));
		return EX_UNAVAILABLE;
	}
	return EX_OK;
}

/* ---- main ---- */

int
main(int argc, char **argv)
{
	struct sm_options o;
	struct config_errors errs;
	struct tern_config *cfg;
	struct peer_identity me;
	struct sm_buf content = { 0 };
	struct sm_list rcpts = { 0 };
	struct maildrop_msg m;
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	char *sender, *name, *from;
	bool eightbit = false, utf8 = false;
	int code;

	/* The setgid group stays unused until the maildrop file is made. */
	drop_gid = getegid() != getgid() ? getegid() : (gid_t)-1;
	started_setgid = drop_gid != (gid_t)-1;
	if (drop_gid != (gid_t)-1 && setegid(getgid()) == -1)
		die(EX_OSERR, "setegid: %s", strerror(errno));
	log_init("sendmail", LOG_TARGET_STDERR, false);
	/* A daemon that goes away must give EPIPE (then the maildrop), not
	 * kill us. */
	signal(SIGPIPE, SIG_IGN);

	memset(&o, 0, sizeof(o));
	o.mode = 'm';
	o.body = -1;
	if (strcmp(prog, "mailq") == 0)
		o.mode = 'p';
	else if (strcmp(prog, "newaliases") == 0)
		o.mode = 'i';
	parse_options(argc, argv, &o);
	argc -= optind;
	argv += optind;
	if (o.mode == 'i')
		return EX_OK;		/* tern has no aliases database */

	/* A config the user picked gets only the user's own rights, unless
	 * root wrote it (and nobody else can). */
	if (drop_gid != (gid_t)-1 && getuid() != 0 &&
	    (o.config != NULL || getenv("TERN_CONFIG") != NULL) &&
	    !is_root_config(config_default_path(o.config)))
		drop_setgid_forever();
	cfg = config_load_unchecked(config_default_path(o.config), &errs);
	if (cfg == NULL) {
		config_errors_print(&errs, stderr);
		config_errors_free(&errs);
		return EX_CONFIG;
	}
	if (o.mode == 'p') {
		code = list_queue(cfg);
		config_free(cfg);
		return code;
	}
	if (o.mode == 's') {
		struct bs_config bc = {
			.hostname = cfg->server.hostname,
			.timeout_ms = SUBMIT_TIMEOUT_MS,
			.size_limit = cfg->server.message_size_limit,
			.drop = drop_file,
			.drop_arg = cfg,
		};
		char *path = xasprintf("%s/public/sendmail", cfg->server.run_dir);

		bc.socket_path = path;
		code = smtp_stdio_run(&bc, stdin, stdout);
		free(path);
		config_free(cfg);
		return code == 0 ? EX_OK : EX_SOFTWARE;
	}

	memset(&me, 0, sizeof(me));
	me.uid = getuid();
	me.gid = getgid();
	me.pid = getpid();
	peercred_lookup_user(&me);
	sender = envelope_sender(&o, &me, cfg);
	name = full_name(&o, &me);
	add_arg_recipients(argc, argv, &rcpts);

	read_message(&o, cfg->server.message_size_limit, &content, &eightbit);
	if (o.extract) {
		const char *why = NULL;

		if (sm_extract_recipients(&content, &rcpts, &why) == -1)
			die(EX_DATAERR, "-t: %s", why);
	}
	if (rcpts.n == 0)
		die(EX_USAGE, "no recipient addresses (give them as arguments, "
		    "or use -t)");
	for (size_t i = 0; i < rcpts.n; i++) {
		char *q = sm_qualify(rcpts.v[i], cfg->server.hostname);

		free(rcpts.v[i]);
		rcpts.v[i] = q;
		if (has_sm_8bit(q))
			utf8 = true;
	}
	if (!has_sm_header(content.data, sm_header_length(content.data,
	    content.len), "From")) {
		from = sm_from_header(name, sender);
		if (from == NULL)
			from = sm_from_header(NULL, sender);
		sm_prepend_header(&content, from);
		free(from);
	}

	memset(&m, 0, sizeof(m));
	m.sender = sender;
	m.rcpts = rcpts.v;
	m.n_rcpts = rcpts.n;
	m.notify = o.notify;
	m.ret = o.ret;
	m.envid = (char *)(o.envid ? o.envid : "");
	m.body = (uint8_t)(o.body >= 0 ? o.body :
	    eightbit ? CLEANUP_BODY_8BITMIME : CLEANUP_BODY_7BIT);
	m.smtputf8 = utf8 || has_sm_8bit(sender);
	m.content = content.data;
	m.content_len = content.len;
	code = send_message(cfg, &m, &o);

	sm_list_free(&rcpts);
	sm_buf_free(&content);
	free(sender);
	free(name);
	config_free(cfg);
	return code;
}
