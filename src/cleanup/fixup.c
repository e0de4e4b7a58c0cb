/*
 * fixup.c - header checks and fix-ups of tern-cleanup: hop count, From,
 * Bcc, Message-ID, Date and this hop's Received field, in the shape
 * Postfix writes it. Pure code; runs in tern-cleanup.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixup.h"
#include "ipc.h"
#include "util.h"

#define MESSAGE_ID_LOG_MAX	250	/* kept for logs and the queue record */

void
fixup_sanitize(const char *s, char *buf, size_t size)
{
	size_t n = 0;

	for (; s != NULL && *s != '\0' && n + 1 < size; s++) {
		unsigned char c = (unsigned char)*s;

		buf[n++] = (c < 33 || c > 126 || c == '(' || c == ')' ||
		    c == '\\') ? '?' : (char)c;
	}
	buf[n] = '\0';
}

void
fixup_format_date(time_t t, char *buf, size_t size)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	long off;
	char sign = '+';

	localtime_r(&t, &tm);
	off = tm.tm_gmtoff / 60;
	if (off < 0) {
		sign = '-';
		off = -off;
	}
	snprintf(buf, size, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
	    off / 60, off % 60);
}

/* Whether this source's messages are ours to complete (not inbound). */
static bool
is_outgoing(uint8_t source)
{
	return source != CLEANUP_SOURCE_INBOUND;
}

/* "with" protocol names of RFC 3848 and RFC 6531. */
static const char *
protocol_name(const struct fixup_env *env)
{
	bool tls = env->tls != NULL && *env->tls != '\0';
	bool auth = env->auth_user != NULL && *env->auth_user != '\0';

	if (env->source == CLEANUP_SOURCE_HTTP)
		return tls ? "HTTPS" : "HTTP";
	if (env->smtputf8)
		return tls ? (auth ? "UTF8SMTPSA" : "UTF8SMTPS")
		    : (auth ? "UTF8SMTPA" : "UTF8SMTP");
	return tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

/* Appends to a growing string. */
static void
cat(char **s, const char *fmt, ...) TERN_PRINTF(2, 3);

static void
cat(char **s, const char *fmt, ...)
{
	va_list ap;
	char *add, *t;

	va_start(ap, fmt);
	add = xvasprintf(fmt, ap);
	va_end(ap);
	t = xasprintf("%s%s", *s ? *s : "", add);
	free(add);
	free(*s);
	*s = t;
}

char *
fixup_received(const struct fixup_env *env)
{
	char helo[256], name[256], addr[64], tls[200], user[256], date[64];
	char host[256], qid[64];
	char *s = NULL;

	fixup_sanitize(env->helo, helo, sizeof(helo));
	fixup_sanitize(env->client_name, name, sizeof(name));
	fixup_sanitize(env->client_addr, addr, sizeof(addr));
	fixup_sanitize(env->tls, tls, sizeof(tls));
	fixup_sanitize(env->auth_user, user, sizeof(user));
	fixup_sanitize(env->hostname, host, sizeof(host));
	fixup_sanitize(env->queue_id, qid, sizeof(qid));
	fixup_format_date(env->now, date, sizeof(date));
	/* The TLS text has spaces between protocol and cipher: keep them. */
	for (size_t i = 0; env->tls != NULL && env->tls[i] != '\0' &&
	    tls[i] != '\0'; i++)
		if (env->tls[i] == ' ')
			tls[i] = ' ';

	if (env->source == CLEANUP_SOURCE_SUBMISSION ||
	    env->source == CLEANUP_SOURCE_INBOUND ||
	    env->source == CLEANUP_SOURCE_HTTP) {
		cat(&s, "Received: from %s (%s [%s])", *helo ? helo : "unknown",
		    *name ? name : "unknown", *addr ? addr : "127.0.0.1");
		if (*tls)
			cat(&s, "\r\n\t(using %s)", tls);
		if (*user)
			cat(&s, "\r\n\t(Authenticated sender: %s)", user);
		cat(&s, "\r\n\tby %s (tern) with %s id %s", host,
		    protocol_name(env), qid);
	} else if (env->source == CLEANUP_SOURCE_SENDMAIL && *user) {
		unsigned long uid;
		int n = 0;

		/* sendmail's identity is "uid=N user=NAME": Postfix's words. */
		if (sscanf(env->auth_user, "uid=%lu%n", &uid, &n) == 1 && n > 4)
			cat(&s, "Received: by %s (tern, from userid %lu)\r\n\tid %s",
			    host, uid, qid);
		else
			cat(&s, "Received: by %s (tern, from user %s)\r\n\tid %s",
			    host, user, qid);
	} else {
		cat(&s, "Received: by %s (tern)\r\n\tid %s", host, qid);
	}
	if (env->single_rcpt != NULL && strlen(env->single_rcpt) < 300 &&
	    strpbrk(env->single_rcpt, "\r\n") == NULL)
		cat(&s, "\r\n\tfor <%s>; %s\r\n", env->single_rcpt, date);
	else
		cat(&s, "; %s\r\n", date);
	return s;
}

/* The Message-ID for logs and the queue record: cut, control bytes
 * replaced. */
static char *
message_id_for_log(const char *value)
{
	size_t n = strlen(value);
	char *s;

	if (n > MESSAGE_ID_LOG_MAX)
		n = MESSAGE_ID_LOG_MAX;
	s = xstrndup(value, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 32 || s[i] == 127)
			s[i] = '?';
	return s;
}

void
fixup_headers(struct header_list *h, const struct fixup_env *env,
    struct fixup_result *r)
{
	size_t n_from;
	const struct header_field *f;
	bool outgoing = is_outgoing(env->source);

	memset(r, 0, sizeof(*r));
	r->append = xstrdup("");
	r->n_received = header_count(h, "Received");
	if (r->n_received > FIXUP_MAX_HOPS) {
		r->code = 554;
		r->status = "5.4.6";
		r->text = "Too many hops (mail forwarding loop)";
		return;
	}
	n_from = header_count(h, "From");
	if (n_from > 1 && outgoing) {
		r->code = 550;
		r->status = "5.6.0";
		r->text = "Message has more than one From header field";
		return;
	}
	if (n_from == 0 && (env->source == CLEANUP_SOURCE_SUBMISSION ||
	    env->source == CLEANUP_SOURCE_HTTP)) {
		r->code = 550;
		r->status = "5.6.0";
		r->text = "Message has no From header field";
		return;
	}
	if ((f = header_find(h, "From")) != NULL) {
		char *v = header_value_unfolded(f), domain[256];

		if (header_mailbox_domain(v, domain, sizeof(domain)) == 0)
			r->from_domain = xstrdup(domain);
		free(v);
	} else if (outgoing && env->sender != NULL && *env->sender != '\0') {
		/* sendmail without a From: the envelope sender, as
		 * sendmail and Postfix do. */
		const char *at = strrchr(env->sender, '@');

		cat(&r->append, "From: %s\r\n", env->sender);
		if (at != NULL) {
			r->from_domain = xstrdup(at + 1);
			ascii_lowercase(r->from_domain);
		}
	}
	if (outgoing) {
		for (size_t i = 0; i < h->n; i++)
			if (is_header_named(&h->v[i], "Bcc") ||
			    is_header_named(&h->v[i], "Resent-Bcc"))
				h->v[i].removed = true;
	}
	if ((f = header_find(h, "Message-ID")) != NULL) {
		char *v = header_value_unfolded(f);

		r->message_id = message_id_for_log(v);
		free(v);
	} else if (outgoing) {
		char host[256];

		fixup_sanitize(env->hostname, host, sizeof(host));
		r->message_id = xasprintf("<%s@%s>", env->unique, host);
		cat(&r->append, "Message-ID: %s\r\n", r->message_id);
	} else {
		r->message_id = xstrdup("");
	}
	if (outgoing && header_find(h, "Date") == NULL) {
		char date[64];

		fixup_format_date(env->now, date, sizeof(date));
		cat(&r->append, "Date: %s\r\n", date);
	}
}

void
fixup_result_free(struct fixup_result *r)
{
	free(r->from_domain);
	free(r->message_id);
	free(r->prepend);
	free(r->append);
	memset(r, 0, sizeof(*r));
}

void
fixup_write_headers(const struct header_list *h, const struct fixup_result *r,
    void (*out)(void *arg, const char *p, size_t n), void *arg)
{
	if (r->prepend != NULL)
		out(arg, r->prepend, strlen(r->prepend));
	for (size_t i = 0; i < h->n; i++) {
		if (h->v[i].removed)
			continue;
		out(arg, h->v[i].text, h->v[i].len);
		out(arg, "\r\n", 2);
	}
	if (r->append != NULL)
		out(arg, r->append, strlen(r->append));
	out(arg, "\r\n", 2);
}

static void
count_out(void *arg, const char *p, size_t n)
{
	(void)p;
	*(size_t *)arg += n;
}

size_t
fixup_headers_size(const struct header_list *h, const struct fixup_result *r)
{
	size_t n = 0;

	fixup_write_headers(h, r, count_out, &n);
	return n;
}
