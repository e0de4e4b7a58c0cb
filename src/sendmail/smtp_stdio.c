/*
 * smtp_stdio.c - `sendmail -bs`: an SMTP session on stdin/stdout for
 * programs that speak SMTP to a local command. Each MAIL, RCPT and
 * end-of-data is relayed to tern-cleanup as it comes, so every reply is
 * cleanup's own (a suppressed recipient is refused at RCPT). When tern
 * is down, or goes away mid-transaction, the transaction is finished
 * into the maildrop instead, and the 250 after DATA is given only once
 * the file is durable. Runs as the invoking user (see sendmail.c).
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "maildrop.h"
#include "message.h"
#include "smtp_stdio.h"
#include "submit.h"
#include "util.h"

#define SMTP_LINE_MAX		1000	/* RFC 5321 text line, with CRLF */
#define SMTP_MAX_ERRORS		20
#define SMTP_MAX_RCPTS		1000

enum bs_state {
	BS_GREETED,			/* before HELO/EHLO */
	BS_READY,			/* no transaction */
	BS_MAIL,			/* MAIL given, no recipient yet */
	BS_RCPT,			/* at least one recipient */
};

struct bs_session {
	const struct bs_config *bc;
	FILE *in, *out;
	enum bs_state state;
	struct submit_conn *conn;	/* NULL: not connected (or down) */
	bool conn_tried;
	bool dropping;			/* this transaction goes to the maildrop */
	uint32_t reqid;
	char *sender;
	uint8_t body;
	struct sm_list rcpts;
	unsigned errors;
};

static void TERN_PRINTF(2, 3)
reply(struct bs_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(s->out, fmt, ap);
	va_end(ap);
	fputs("\r\n", s->out);
	fflush(s->out);
}

/* Relays a reply of cleanup, whose text is untrusted for line breaks. */
static void
relay(struct bs_session *s, const struct submit_reply *r)
{
	char text[sizeof(r->text)];

	tern_strlcpy(text, r->text, sizeof(text));
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	reply(s, "%u %s %s", r->code, r->status, text);
}

/* Reads a line without its end; -1 at EOF; *too_long when it was cut. */
static int
read_line(struct bs_session *s, char *buf, size_t size, size_t *len,
    bool *too_long)
{
	size_t n = 0;
	int c;

	*too_long = false;
	while ((c = fgetc(s->in)) != EOF) {
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = (char)c;
		else
			*too_long = true;
	}
	if (c == EOF && n == 0)
		return -1;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	*len = n;
	return 0;
}

static void
txn_reset(struct bs_session *s)
{
	if (s->conn != NULL && s->state >= BS_MAIL && !s->dropping)
		submit_abort(s->conn, s->reqid);
	free(s->sender);
	s->sender = NULL;
	sm_list_free(&s->rcpts);
	s->dropping = false;
	s->body = CLEANUP_BODY_7BIT;
	if (s->state > BS_READY)
		s->state = BS_READY;
}

/* The connection failed: the rest of this transaction goes to the maildrop. */
static void
conn_lost(struct bs_session *s)
{
	submit_close(s->conn);
	s->conn = NULL;
	s->dropping = true;
}

/* Parses "FROM:<addr> params" / "TO:<addr> params"; the address or NULL. */
static char *
path_arg(const char *arg, const char *prefix, const char *domain, bool *params_8bit)
{
	size_t plen = strlen(prefix), n;
	const char *p, *end;
	char *addr;

	if (!has_ascii_prefix_ci(arg, prefix))
		return NULL;
	p = arg + plen;
	while (*p == ' ')
		p++;
	if (*p != '<' || (end = strchr(p, '>')) == NULL)
		return NULL;
	n = (size_t)(end - p - 1);
	addr = xstrndup(p + 1, n);
	if (params_8bit != NULL) {
		const char *b = end + 1;

		while ((b = strchr(b, ' ')) != NULL) {
			b++;
			if (has_ascii_prefix_ci(b, "BODY=8BITMIME"))
				*params_8bit = true;
		}
	}
	if (n == 0)
		return addr;		/* <> */
	if (!is_sm_address(addr)) {
		free(addr);
		return NULL;
	}
	{
		char *q = sm_qualify(addr, domain);

		free(addr);
		return q;
	}
}

static void
cmd_mail(struct bs_session *s, const char *arg)
{
	struct maildrop_msg env;
	struct submit_reply r;
	bool eightbit = false;
	char *sender;

	if (s->state != BS_READY) {
		reply(s, "503 5.5.1 Error: %s", s->state == BS_GREETED ?
		    "send HELO/EHLO first" : "nested MAIL command");
		return;
	}
	sender = path_arg(arg, "FROM:", s->bc->hostname, &eightbit);
	if (sender == NULL) {
		reply(s, "501 5.1.7 Bad sender address syntax");
		s->errors++;
		return;
	}
	s->sender = sender;
	s->body = eightbit ? CLEANUP_BODY_8BITMIME : CLEANUP_BODY_7BIT;
	if (s->conn == NULL && !s->conn_tried) {
		s->conn_tried = true;
		s->conn = submit_connect(s->bc->socket_path, "sendmail",
		    s->bc->timeout_ms);
	}
	s->dropping = s->conn == NULL;
	if (!s->dropping) {
		memset(&env, 0, sizeof(env));
		env.sender = s->sender;
		env.body = s->body;
		env.envid = (char *)"";
		/* 421: cleanup is going down; nothing was taken yet. */
		if (submit_begin(s->conn, CLEANUP_SOURCE_SENDMAIL, "", &env,
		    &s->reqid, &r) == -1 || r.code == 421) {
			conn_lost(s);
		} else if (r.code >= 300) {
			relay(s, &r);
			free(s->sender);
			s->sender = NULL;
			return;
		}
	}
	s->state = BS_MAIL;
	reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct bs_session *s, const char *arg)
{
	struct submit_reply r;
	char *addr;

	if (s->state < BS_MAIL) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	addr = path_arg(arg, "TO:", s->bc->hostname, NULL);
	if (addr == NULL || *addr == '\0') {
		reply(s, "501 5.1.3 Bad recipient address syntax");
		s->errors++;
		free(addr);
		return;
	}
	if (s->rcpts.n >= SMTP_MAX_RCPTS) {
		reply(s, "452 4.5.3 Error: too many recipients");
		free(addr);
		return;
	}
	if (!s->dropping) {
		if (submit_rcpt(s->conn, s->reqid, addr, 0, &r) == -1) {
			conn_lost(s);
		} else if (r.code >= 300) {
			relay(s, &r);
			free(addr);
			return;
		}
	}
	sm_list_add(&s->rcpts, addr);
	free(addr);
	s->state = BS_RCPT;
	reply(s, "250 2.1.5 Ok");
}

/* Reads the message after 354; -1 at EOF (the client went away). */
static int
read_data(struct bs_session *s, struct sm_buf *content, bool *nul,
    bool *too_big, bool *eightbit)
{
	char line[SMTP_LINE_MAX + 2];
	size_t len;
	bool too_long;

	*nul = *too_big = *eightbit = false;
	for (;;) {
		const char *p = line;
		size_t n;

		/* A line may hold a NUL: read it with fgets-like care. */
		n = 0;
		too_long = false;
		{
			int c;

			while ((c = fgetc(s->in)) != EOF && c != '\n') {
				if (c == '\0')
					*nul = true;
				if ((unsigned char)c >= 0x80)
					*eightbit = true;
				if (n + 1 < sizeof(line))
					line[n++] = (char)c;
				else
					too_long = true;
			}
			if (c == EOF)
				return -1;
		}
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		len = n;
		if (len == 1 && line[0] == '.')
			return 0;
		if (line[0] == '.') {
			p++;
			len--;
		}
		if (too_long)
			*too_big = true;	/* a line over 998 bytes: refuse */
		if (content->len + len + 2 > s->bc->size_limit) {
			*too_big = true;
			continue;
		}
		sm_buf_append(content, p, len);
		sm_buf_append(content, "\r\n", 2);
	}
}

static void
cmd_data(struct bs_session *s)
{
	struct sm_buf content = { 0 };
	struct submit_reply r;
	struct maildrop_msg m;
	bool nul, too_big, eightbit;
	char name[96];

	if (s->state != BS_RCPT) {
		reply(s, s->state == BS_MAIL ? "554 5.5.1 Error: no valid recipients" :
		    "503 5.5.1 Error: need RCPT command");
		return;
	}
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
	if (read_data(s, &content, &nul, &too_big, &eightbit) == -1) {
		sm_buf_free(&content);
		txn_reset(s);
		return;
	}
	if (nul || too_big) {
		reply(s, nul ? "554 5.6.0 Error: the message contains a NUL byte" :
		    "552 5.3.4 Error: message too large or a line longer than "
		    "998 bytes");
		sm_buf_free(&content);
		txn_reset(s);
		return;
	}
	if (content.data == NULL)
		sm_buf_append(&content, "", 0);
	if (!s->dropping) {
		if (submit_content(s->conn, s->reqid, content.data, content.len,
		    &r) == -1) {
			conn_lost(s);
		} else {
			if (r.code < 300)
				reply(s, "250 2.0.0 Ok: queued as %s", r.qid);
			else
				relay(s, &r);
			/* The transaction is over at cleanup either way. */
			s->dropping = true;
			sm_buf_free(&content);
			txn_reset(s);
			return;
		}
	}
	memset(&m, 0, sizeof(m));
	m.sender = s->sender;
	m.rcpts = s->rcpts.v;
	m.n_rcpts = s->rcpts.n;
	m.envid = (char *)"";
	m.body = eightbit ? CLEANUP_BODY_8BITMIME : s->body;
	m.content = content.data;
	m.content_len = content.len;
	if (s->bc->drop(&m, name, sizeof(name), s->bc->drop_arg) == 0)
		reply(s, "250 2.0.0 Ok: kept in the maildrop as %s until tern "
		    "starts", name);
	else
		reply(s, "451 4.3.0 Error: tern is not running and the maildrop "
		    "cannot take the message");
	sm_buf_free(&content);
	txn_reset(s);
}

int
smtp_stdio_run(const struct bs_config *bc, FILE *in, FILE *out)
{
	struct bs_session s;
	char line[SMTP_LINE_MAX + 2];
	size_t len;
	bool too_long;

	memset(&s, 0, sizeof(s));
	s.bc = bc;
	s.in = in;
	s.out = out;
	s.state = BS_GREETED;
	reply(&s, "220 %s ESMTP tern (sendmail -bs)", bc->hostname);
	while (read_line(&s, line, sizeof(line), &len, &too_long) == 0) {
		char *arg;

		if (s.errors >= SMTP_MAX_ERRORS) {
			reply(&s, "421 4.7.0 %s Error: too many errors", bc->hostname);
			break;
		}
		if (too_long || memchr(line, '\0', len) != NULL) {
			reply(&s, "500 5.5.2 Error: bad command line");
			s.errors++;
			continue;
		}
		arg = line + strcspn(line, " ");
		if (*arg == ' ')
			*arg++ = '\0';
		if (is_ascii_strcaseeq(line, "HELO")) {
			txn_reset(&s);
			s.state = BS_READY;
			reply(&s, "250 %s", bc->hostname);
		} else if (is_ascii_strcaseeq(line, "EHLO")) {
			txn_reset(&s);
			s.state = BS_READY;
			reply(&s, "250-%s", bc->hostname);
			reply(&s, "250-8BITMIME");
			reply(&s, "250 ENHANCEDSTATUSCODES");
		} else if (is_ascii_strcaseeq(line, "MAIL")) {
			cmd_mail(&s, arg);
		} else if (is_ascii_strcaseeq(line, "RCPT")) {
			cmd_rcpt(&s, arg);
		} else if (is_ascii_strcaseeq(line, "DATA")) {
			cmd_data(&s);
		} else if (is_ascii_strcaseeq(line, "RSET")) {
			txn_reset(&s);
			reply(&s, "250 2.0.0 Ok");
		} else if (is_ascii_strcaseeq(line, "NOOP")) {
			reply(&s, "250 2.0.0 Ok");
		} else if (is_ascii_strcaseeq(line, "VRFY")) {
			reply(&s, "252 2.0.0 Send some mail, I'll try my best");
		} else if (is_ascii_strcaseeq(line, "QUIT")) {
			txn_reset(&s);
			reply(&s, "221 2.0.0 Bye");
			break;
		} else {
			reply(&s, "502 5.5.2 Error: command not recognized");
			s.errors++;
		}
	}
	txn_reset(&s);
	submit_close(s.conn);
	return 0;
}
