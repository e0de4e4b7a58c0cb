/*
 * commands.c - the SMTP command table of tern-smtpd and what each command
 * does: EHLO/HELO, STARTTLS, AUTH, MAIL, RCPT, DATA, BDAT, RSET, NOOP,
 * QUIT, VRFY, HELP. The table says in which states a command is allowed;
 * the handlers check the rest and answer. Policy (who may send what) is
 * here too. Runs in tern-smtpd, unprivileged.
 */
#include "autoconfig.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

#define ST(x)		(1u << (x))
#define ST_TX		(ST(S_MAIL) | ST(S_RCPT))
#define ST_ANY		(ST(S_HELO) | ST(S_READY) | ST_TX)

struct smtp_command_def {
	const char *name;
	void (*fn)(struct session *s, char *args);
	unsigned states;		/* where the command is allowed */
	const char *refusal;		/* the reply elsewhere */
};

static void cmd_ehlo(struct session *s, char *args);
static void cmd_helo(struct session *s, char *args);
static void cmd_starttls(struct session *s, char *args);
static void cmd_auth(struct session *s, char *args);
static void cmd_mail(struct session *s, char *args);
static void cmd_rcpt(struct session *s, char *args);
static void cmd_data(struct session *s, char *args);
static void cmd_bdat(struct session *s, char *args);
static void cmd_rset(struct session *s, char *args);
static void cmd_noop(struct session *s, char *args);
static void cmd_quit(struct session *s, char *args);
static void cmd_vrfy(struct session *s, char *args);
static void cmd_help(struct session *s, char *args);

static const struct smtp_command_def commands[] = {
	{ "EHLO", cmd_ehlo, ST_ANY, NULL },
	{ "HELO", cmd_helo, ST_ANY, NULL },
	{ "STARTTLS", cmd_starttls, ST_ANY, NULL },
	{ "AUTH", cmd_auth, ST(S_READY),
	  "503 5.5.1 Error: send EHLO first, and AUTH is not allowed in a transaction" },
	{ "MAIL", cmd_mail, ST(S_READY),
	  "503 5.5.1 Error: send EHLO first, no nested MAIL" },
	{ "RCPT", cmd_rcpt, ST_TX, "503 5.5.1 Error: need MAIL command" },
	{ "DATA", cmd_data, ST(S_RCPT), "503 5.5.1 Error: need RCPT command" },
	{ "BDAT", cmd_bdat, ST_ANY, NULL },
	{ "RSET", cmd_rset, ST_ANY, NULL },
	{ "NOOP", cmd_noop, ST_ANY, NULL },
	{ "QUIT", cmd_quit, ST_ANY, NULL },
	{ "VRFY", cmd_vrfy, ST_ANY, NULL },
	{ "HELP", cmd_help, ST_ANY, NULL },
};

/*
 * NOOP, RSET, VRFY and HELP move no mail. A client may send
 * max_junk_commands of them per message; past that each one counts as an
 * error, so that a client cannot hold a session open for ever with
 * commands that do nothing (as Postfix's smtpd_junk_command_limit).
 */
static void
session_reply_junk(struct session *s, const char *reply)
{
	if (++s->junk > smtpd.d.cfg->smtpd.max_junk_commands)
		session_reply_error(s, "%s", reply);
	else
		session_reply(s, "%s", reply);
}

static bool
is_submission(const struct session *s)
{
	return s->listener->cfg->mode != LISTEN_INBOUND;
}

/* AUTH is offered on submission listeners over TLS when users exist. */
static bool
is_auth_offered(const struct session *s)
{
	return is_submission(s) && s->tls && smtpd.users != NULL;
}

void
smtp_command(struct session *s, char *line)
{
	char *verb, *args;
	const struct smtp_command_def *def = NULL;

	s->n_commands++;
	if (smtp_split_command(line, &verb, &args) == 0)
		for (size_t i = 0; i < TERN_ARRAY_LEN(commands); i++)
			if (is_ascii_strcaseeq(verb, commands[i].name)) {
				def = &commands[i];
				break;
			}
	if (def == NULL) {
		s->n_unknown++;
		session_reply_error(s, "500 5.5.2 Error: command not recognized");
		return;
	}
	if (smtpd.d.draining && s->tx == NULL && def->fn != cmd_quit) {
		session_reply(s, "421 4.3.2 %s Service shutting down, closing "
		    "transmission channel", smtpd.d.cfg->server.hostname);
		session_close_after_reply(s);
		return;
	}
	if (!(def->states & ST(s->state))) {
		if (s->state == S_HELO && def->refusal != NULL)
			session_reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		else
			session_reply_error(s, "%s", def->refusal ? def->refusal
			    : "503 5.5.1 Error: bad sequence of commands");
		return;
	}
	def->fn(s, args);
}

/* A HELO/EHLO name: printable ASCII without spaces, not empty. */
static bool
is_helo_name(const char *name)
{
	if (*name == '\0' || strlen(name) > 255)
		return false;
	for (; *name != '\0'; name++)
		if (*name <= ' ' || *name > '~')
			return false;
	return true;
}

static void
cmd_ehlo(struct session *s, char *args)
{
	const char *lines[12];
	size_t n = 0;
	char size[40];

	s->n_ehlo++;
	if (!is_helo_name(args)) {
		session_reply_error(s, "501 5.5.4 Syntax: EHLO hostname");
		return;
	}
	session_reset_transaction(s);
	tern_strlcpy(s->helo, args, sizeof(s->helo));
	s->esmtp = true;
	snprintf(size, sizeof(size), "SIZE %llu",
	    (unsigned long long)smtpd.d.cfg->server.message_size_limit);
	lines[n++] = "PIPELINING";
	lines[n++] = size;
	lines[n++] = "8BITMIME";
	lines[n++] = "SMTPUTF8";
	lines[n++] = "ENHANCEDSTATUSCODES";
	if (s->listener->tls != NULL && !s->tls)
		lines[n++] = "STARTTLS";
	if (is_auth_offered(s))
		lines[n++] = "AUTH PLAIN LOGIN";
	lines[n++] = "DSN";
	lines[n++] = "CHUNKING";
	session_reply(s, "250-%s", smtpd.d.cfg->server.hostname);
	for (size_t i = 0; i < n; i++)
		session_reply(s, "250%c%s", i + 1 == n ? ' ' : '-', lines[i]);
	session_enter_state(s, S_READY);
}

static void
cmd_helo(struct session *s, char *args)
{
	s->n_helo++;
	if (!is_helo_name(args)) {
		session_reply_error(s, "501 5.5.4 Syntax: HELO hostname");
		return;
	}
	session_reset_transaction(s);
	tern_strlcpy(s->helo, args, sizeof(s->helo));
	s->esmtp = false;
	session_reply(s, "250 %s", smtpd.d.cfg->server.hostname);
	session_enter_state(s, S_READY);
}

static void
cmd_starttls(struct session *s, char *args)
{
	s->n_starttls++;
	if (*args != '\0') {
		session_reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls) {
		session_reply_error(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (s->listener->tls == NULL) {
		session_reply_error(s, "454 4.7.0 TLS not available");
		return;
	}
	session_start_tls(s);
}

/* ---- AUTH (RFC 4954) ---- */

enum { AUTH_PLAIN = 1, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

static void
auth_fail_syntax(struct session *s)
{
	session_enter_state(s, S_READY);
	session_reply_error(s, "501 5.5.2 Error: cannot decode AUTH response");
}

static void
auth_plain(struct session *s, const char *b64)
{
	unsigned char buf[SMTP_AUTH_LINE_MAX];
	const char *authzid, *authcid, *password;
	long n = smtp_base64_decode(b64, buf, sizeof(buf));
	size_t a, b;

	if (n < 0)
		goto bad;
	authzid = (const char *)buf;
	a = strlen(authzid);
	if ((long)a >= n)
		goto bad;
	authcid = authzid + a + 1;
	b = strlen(authcid);
	if ((long)(a + 1 + b) >= n)
		goto bad;
	password = authcid + b + 1;
	if ((long)(a + b + 2 + strlen(password)) != n || *authcid == '\0')
		goto bad;
	session_enter_state(s, S_READY);
	/* Acting for someone else is not offered. */
	if (*authzid != '\0' && strcmp(authzid, authcid) != 0) {
		session_reply_error(s, "535 5.7.8 Error: authentication failed");
		return;
	}
	auth_check(s, authcid, password);
	explicit_bzero(buf, sizeof(buf));
	return;
bad:
	explicit_bzero(buf, sizeof(buf));
	auth_fail_syntax(s);
}

static void
cmd_auth(struct session *s, char *args)
{
	char *mech = args, *initial;

	s->n_auth++;
	if (!is_submission(s) || smtpd.users == NULL) {
		session_reply_error(s, "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (!s->tls) {
		session_reply_error(s, "538 5.7.11 Encryption required for "
		    "requested authentication mechanism");
		return;
	}
	if (s->auth_user != NULL) {
		session_reply_error(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	initial = strchr(args, ' ');
	if (initial != NULL)
		*initial++ = '\0';
	if (is_ascii_strcaseeq(mech, "PLAIN")) {
		if (initial != NULL) {
			auth_plain(s, strcmp(initial, "=") == 0 ? "" : initial);
			return;
		}
		s->auth_step = AUTH_PLAIN;
		session_enter_state(s, S_AUTH);
		session_reply(s, "334 ");
	} else if (is_ascii_strcaseeq(mech, "LOGIN")) {
		session_enter_state(s, S_AUTH);
		if (initial != NULL) {
			unsigned char user[512];

			if (smtp_base64_decode(initial, user, sizeof(user)) <= 0) {
				auth_fail_syntax(s);
				return;
			}
			free(s->auth_login_user);
			s->auth_login_user = xstrdup((char *)user);
			s->auth_step = AUTH_LOGIN_PASS;
			session_reply(s, "334 UGFzc3dvcmQ6");
			return;
		}
		s->auth_step = AUTH_LOGIN_USER;
		session_reply(s, "334 VXNlcm5hbWU6");
	} else {
		session_reply_error(s, "504 5.5.4 Error: unsupported authentication "
		    "mechanism");
	}
}

void
smtp_auth_continue(struct session *s, char *line)
{
	unsigned char pw[1024];

	if (strcmp(line, "*") == 0) {
		session_enter_state(s, S_READY);
		session_reply_error(s, "501 5.7.0 Error: authentication aborted");
		return;
	}
	switch (s->auth_step) {
	case AUTH_PLAIN:
		auth_plain(s, line);
		break;
	case AUTH_LOGIN_USER:
		if (smtp_base64_decode(line, pw, sizeof(pw)) <= 0) {
			auth_fail_syntax(s);
			return;
		}
		free(s->auth_login_user);
		s->auth_login_user = xstrdup((char *)pw);
		s->auth_step = AUTH_LOGIN_PASS;
		session_reply(s, "334 UGFzc3dvcmQ6");
		break;
	case AUTH_LOGIN_PASS:
		if (smtp_base64_decode(line, pw, sizeof(pw)) < 0) {
			explicit_bzero(pw, sizeof(pw));
			auth_fail_syntax(s);
			return;
		}
		session_enter_state(s, S_READY);
		auth_check(s, s->auth_login_user, (char *)pw);
		explicit_bzero(pw, sizeof(pw));
		break;
	default:
		auth_fail_syntax(s);
	}
}

void
session_auth_result(struct session *s, const char *user, bool ok)
{
	if (ok) {
		free(s->auth_user);
		s->auth_user = xstrdup(user);
		log_info("unknown[%s]: sasl_username=%s", s->addr, user);
		session_reply(s, "235 2.7.0 Authentication successful");
		session_resume(s);
		return;
	}
	log_info("unknown[%s]: SASL authentication failed for '%s'", s->addr, user);
	/* The 535 waits, longer for a client that keeps failing. */
	s->delayed_reply = "535 5.7.8 Error: authentication failed";
	session_delay(s, auth_failure_delay(s));
}

/* ---- the transaction ---- */

/* Postfix's line for a refused MAIL or RCPT: greppable by operators. */
static void
log_reject(const struct session *s, const char *stage, const char *sender,
    const char *rcpt, const char *reply)
{
	log_info("NOQUEUE: reject: %s from unknown[%s]: %s; from=<%s>%s%s%s "
	    "proto=%s helo=<%s>", stage, s->addr, reply, sender,
	    rcpt ? " to=<" : "", rcpt ? rcpt : "", rcpt ? ">" : "",
	    s->esmtp ? "ESMTP" : "SMTP", s->helo);
}

/* May this submission client use this envelope sender? */
static bool
is_sender_allowed(const char *sender)
{
	const char *domain;

	if (*sender == '\0')
		return true;
	domain = smtp_address_domain(sender);
	return domain != NULL && config_find_domain(smtpd.d.cfg, domain) != NULL;
}

/* Inbound takes only mail for our return-path domains and postmaster. */
static bool
is_inbound_recipient(const char *addr)
{
	const char *domain = smtp_address_domain(addr);
	const struct tern_config *cfg = smtpd.d.cfg;

	if (is_smtp_relay_trick(addr))
		return false;
	if (domain == NULL)
		return is_ascii_strcaseeq(addr, "postmaster");
	if (config_find_return_path_domain(cfg, domain) != NULL)
		return true;
	if ((size_t)(domain - addr) == 11 && has_ascii_prefix_ci(addr, "postmaster@"))
		return is_ascii_strcaseeq(domain, cfg->server.hostname) ||
		    config_find_domain(cfg, domain) != NULL;
	return false;
}

static void
cmd_mail(struct session *s, char *args)
{
	const struct tern_config *cfg = smtpd.d.cfg;
	struct smtp_mail mail;
	const char *reply;

	s->n_mail++;
	if (is_submission(s) && s->auth_user == NULL && !s->trusted) {
		session_reply_error(s, "530 5.7.0 Authentication required");
		return;
	}
	if (smtp_parse_mail(args, &mail, &reply) == -1) {
		session_reply_error(s, "%s", reply);
		return;
	}
	if (!s->esmtp && strchr(args, '>') != NULL &&
	    strchr(strchr(args, '>'), ' ') != NULL) {
		session_reply_error(s, "555 5.5.4 Error: parameters need EHLO");
		return;
	}
	if (mail.size > cfg->server.message_size_limit) {
		session_reply_error(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (is_submission(s) && !is_sender_allowed(mail.sender)) {
		log_reject(s, "MAIL", mail.sender, NULL, "550 5.7.1 Sender address "
		    "rejected: domain not configured for sending");
		session_reply_error(s, "550 5.7.1 <%s>: Sender address rejected: "
		    "domain not configured for sending", mail.sender);
		return;
	}
	if (!is_cleanup_up()) {
		session_reply_error(s, "451 4.3.0 Error: queue temporarily "
		    "unavailable, try again later");
		return;
	}
	s->tx = xcalloc(1, sizeof(*s->tx));
	s->tx->mail = mail;
	s->pending = P_BEGIN;
	session_wait(s, W_CLEANUP);
	cleanup_begin(s);
}

static void
cmd_rcpt(struct session *s, char *args)
{
	struct transaction *tx = s->tx;
	const char *reply;

	s->n_rcpt++;
	if (smtp_parse_rcpt(args, tx->mail.smtputf8, &tx->rcpt, &reply) == -1) {
		session_reply_error(s, "%s", reply);
		return;
	}
	if (tx->n_rcpts >= smtpd.d.cfg->smtpd.max_recipients) {
		session_reply_error(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (!is_submission(s) && !is_inbound_recipient(tx->rcpt.address)) {
		log_reject(s, "RCPT", tx->mail.sender, tx->rcpt.address,
		    "550 5.7.1 Relay access denied");
		session_reply_error(s, "550 5.7.1 <%s>: Relay access denied",
		    tx->rcpt.address);
		return;
	}
	if (tx->lost) {
		session_reply_error(s, "451 4.3.0 Error: queue temporarily "
		    "unavailable, try again later");
		return;
	}
	s->pending = P_RCPT;
	session_wait(s, W_CLEANUP);
	cleanup_rcpt(s, &tx->rcpt);
}

static void
cmd_data(struct session *s, char *args)
{
	if (*args != '\0') {
		session_reply_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->tx->bdat_used) {
		session_reply_error(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	/* RFC 2920: DATA ends a pipelined group; the message waits for 354. */
	if (evbuffer_get_length(s->in) > 0) {
		log_info("unknown[%s]: message data sent before the 354 reply",
		    s->addr);
		session_reply(s, "554 5.5.0 Error: data sent before the 354 reply");
		session_close_after_reply(s);
		return;
	}
	data_reader_init(&s->tx->reader, false);
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	session_enter_state(s, S_DATA);
}

static void
cmd_bdat(struct session *s, char *args)
{
	struct transaction *tx = s->tx;
	char *last, num[21];
	uint64_t size;
	size_t len;

	s->n_bdat++;
	last = strchr(args, ' ');
	len = last ? (size_t)(last - args) : strlen(args);
	if (last != NULL && !is_ascii_strcaseeq(last + 1, "LAST"))
		len = sizeof(num);
	if (len == 0 || len >= sizeof(num))
		goto unsynced;
	memcpy(num, args, len);
	num[len] = '\0';
	if (parse_uint64(num, UINT64_MAX, &size) == -1)
		goto unsynced;
	/* A chunk we cannot take still follows on the wire: stop here. */
	if (s->state != S_RCPT) {
		session_reply(s, "503 5.5.1 Error: need RCPT command before BDAT");
		session_close_after_reply(s);
		return;
	}
	if (!tx->bdat_used) {
		tx->bdat_used = true;
		data_reader_init(&tx->reader, true);
	}
	tx->bdat_left = size;
	tx->bdat_last = last != NULL;
	session_enter_state(s, S_BDAT);
	if (size == 0)
		smtp_bdat_chunk_end(s);
	return;
unsynced:
	session_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
	session_close_after_reply(s);
}

void
smtp_bdat_chunk_end(struct session *s)
{
	struct transaction *tx = s->tx;
	uint8_t out[4];
	size_t n;

	if (s->state == S_BDAT)
		session_enter_state(s, S_RCPT);
	if (!tx->bdat_last) {
		session_reply(s, "250 2.0.0 Ok: %llu octets received",
		    (unsigned long long)tx->reader.size);
		return;
	}
	data_reader_finish(&tx->reader, out, &n);
	if (tx->reader.flags != 0 && tx->begun) {
		cleanup_abort(s);
		tx->begun = false;
	}
	if (tx->begun && n > 0)
		cleanup_data(s, out, n);
	session_enter_state(s, S_READY);
	smtp_message_end(s);
}

/* The whole message was read: refuse it, or ask cleanup to commit it. */
void
smtp_message_end(struct session *s)
{
	struct transaction *tx = s->tx;

	session_headers_done(s);
	if (tx->from_refused && tx->begun) {
		cleanup_abort(s);
		tx->begun = false;
	}
	if (tx->too_big)
		session_reply_error(s, "552 5.3.4 Error: message size exceeds "
		    "fixed limit");
	else if (tx->reader.flags & (DATA_BARE_LF | DATA_BARE_CR))
		session_reply_error(s, "550 5.5.2 Error: bare <CR> or <LF> in "
		    "message; lines end with <CR><LF> (RFC 5321 2.3.8)");
	else if (tx->from_refused)
		session_reply_error(s, "550 5.7.1 Error: From: %s not allowed: "
		    "domain not configured for sending", tx->from_bad);
	else if (tx->reader.flags & DATA_LONG_LINE)
		session_reply_error(s, "550 5.5.2 Error: message line longer than "
		    "1000 bytes (RFC 5321 4.5.3.1.6)");
	else if (tx->lost || !tx->begun)
		session_reply_error(s, "451 4.3.0 Error: queue temporarily "
		    "unavailable, try again later");
	else {
		s->pending = P_END;
		session_wait(s, W_CLEANUP);
		cleanup_end(s);
		return;
	}
	session_reset_transaction(s);
}

/* Postfix's "QID: client=host[addr]" line, once per transaction: at the
 * first accepted recipient, when the queue id is known from BEGIN, so it
 * comes before the message's lines from cleanup and qmgr (pflogsumm counts
 * a message received, with its sender and size, only in that order). */
static void
log_client(struct session *s, const char *queue_id)
{
	struct transaction *tx = s->tx;

	if (tx->client_logged || *queue_id == '\0')
		return;
	tx->client_logged = true;
	log_info("%s: client=unknown[%s]%s%s", queue_id, s->addr,
	    s->auth_user ? ", sasl_username=" : "",
	    s->auth_user ? s->auth_user : "");
}

void
session_cleanup_reply(struct session *s, uint16_t code, const char *enhanced,
    const char *text, const char *queue_id)
{
	struct transaction *tx = s->tx;
	int pending = s->pending;
	bool ok = code >= 200 && code < 300;
	char reply[600];

	snprintf(reply, sizeof(reply), "%u %s %s", code, enhanced, text);
	s->pending = P_NONE;
	switch (pending) {
	case P_BEGIN:
		if (ok) {
			tern_strlcpy(tx->queue_id, queue_id,
			    sizeof(tx->queue_id));
			session_enter_state(s, S_MAIL);
			session_reply(s, "250 2.1.0 Ok");
		} else {
			tx->begun = false;
			log_reject(s, "MAIL", tx->mail.sender, NULL, reply);
			session_reset_transaction(s);
			session_reply_error(s, "%u %s %s", code, enhanced, text);
		}
		break;
	case P_RCPT:
		if (ok) {
			tx->n_rcpts++;
			log_client(s, tx->queue_id);
			session_enter_state(s, S_RCPT);
			session_reply(s, "250 2.1.5 Ok");
		} else {
			log_reject(s, "RCPT", tx->mail.sender, tx->rcpt.address,
			    reply);
			session_reply_error(s, "%u %s %s", code, enhanced, text);
		}
		break;
	case P_END:
		tx->begun = false;
		/* Only cleanup's word that the message is on disk makes a 250. */
		if (code == 250 && *queue_id != '\0') {
			/* Here only if BEGIN named no queue id. */
			log_client(s, queue_id);
			session_reply(s, "250 2.0.0 Ok: queued as %s", queue_id);
			s->junk = 0;
		} else if (ok) {
			log_warn("cleanup accepted without a queue id");
			session_reply_error(s, "451 4.3.0 Error: queue did not "
			    "confirm the message");
		} else {
			session_reply_error(s, "%u %s %s", code, enhanced, text);
		}
		session_reset_transaction(s);
		break;
	default:
		return;
	}
	if (s->wait == W_CLEANUP)
		session_resume(s);
}

static void
cmd_rset(struct session *s, char *args)
{
	s->n_rset++;
	if (*args != '\0') {
		session_reply_error(s, "501 5.5.4 Syntax: RSET");
		return;
	}
	session_reset_transaction(s);
	if (s->state != S_HELO)
		session_enter_state(s, S_READY);
	session_reply_junk(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct session *s, char *args)
{
	(void)args;
	s->n_noop++;
	session_reply_junk(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct session *s, char *args)
{
	(void)args;
	s->n_quit++;
	session_reply(s, "221 2.0.0 Bye");
	session_close_after_reply(s);
}

static void
cmd_vrfy(struct session *s, char *args)
{
	(void)args;
	s->n_vrfy++;
	session_reply_junk(s, "252 2.5.2 Cannot VRFY user, but will accept "
	    "message and attempt delivery");
}

static void
cmd_help(struct session *s, char *args)
{
	(void)args;
	s->n_help++;
	session_reply_junk(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL "
	    "RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
}
