/*
 * dsn.c - RFC 3464 delivery status notifications (see dsn.h). Pure.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsn.h"
#include "util.h"

struct out {
	char *data;
	size_t len, cap;
};

static void
out_add(struct out *o, const char *p, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->data = xrealloc(o->data, o->cap);
	}
	memcpy(o->data + o->len, p, n);
	o->len += n;
	o->data[o->len] = '\0';
}

static void
out_str(struct out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

static void TERN_PRINTF(2, 3)
out_fmt(struct out *o, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	out_str(o, s);
	free(s);
}

void
dsn_format_date(int64_t t, char *buf, size_t size)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	snprintf(buf, size, "%s, %d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* A value safe in a header: control characters become spaces. */
static char *
clean(const char *s)
{
	char *c = xstrdup(s ? s : "");

	for (char *p = c; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return c;
}

static bool
is_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/*
 * Writes "Name: value" folded at spaces so lines stay within 78 bytes
 * where possible and always within DSN_LINE_MAX (a long word is cut).
 */
static void
out_field(struct out *o, const char *name, const char *value)
{
	char *v = clean(value);
	size_t col = strlen(name) + 2, len = strlen(v), i = 0;
	bool pending_space = false, started = false;

	out_str(o, name);
	out_str(o, ": ");
	while (i < len) {
		size_t word;

		while (v[i] == ' ') {
			pending_space = started;
			i++;
		}
		if (i >= len)
			break;
		word = strcspn(v + i, " ");
		/* Fold before the word: CRLF TAB stands for the blank. */
		if (pending_space && col + 1 + word > 78) {
			out_str(o, "\r\n\t");
			col = 1;
		} else if (pending_space) {
			out_add(o, " ", 1);
			col++;
		}
		pending_space = false;
		started = true;
		while (word > DSN_LINE_MAX - 1 - col) {
			size_t take = DSN_LINE_MAX - 1 - col;

			out_add(o, v + i, take);
			out_str(o, "\r\n\t");
			i += take;
			word -= take;
			col = 1;
		}
		out_add(o, v + i, word);
		col += word;
		i += word;
	}
	out_str(o, "\r\n");
	free(v);
}

/* The reply text without a leading copy of its enhanced status. */
static const char *
text_after_status(const char *text, const char *status)
{
	size_t n = strlen(status);

	if (n > 0 && strncmp(text, status, n) == 0 && text[n] == ' ')
		return text + n + 1;
	return text;
}

/* Wraps plain text at 72 columns, indented by indent spaces. */
static void
out_wrapped(struct out *o, const char *text, unsigned indent)
{
	char *v = clean(text);
	size_t col = 0, len = strlen(v), i = 0;

	while (i < len) {
		size_t word = strcspn(v + i, " ");

		if (col == 0) {
			for (unsigned k = 0; k < indent; k++)
				out_add(o, " ", 1);
			col = indent;
		} else if (col + 1 + word > 72) {
			out_str(o, "\r\n");
			for (unsigned k = 0; k < indent; k++)
				out_add(o, " ", 1);
			col = indent;
		} else {
			out_add(o, " ", 1);
			col++;
		}
		while (word > 900) {
			out_add(o, v + i, 900);
			out_str(o, "\r\n");
			i += 900;
			word -= 900;
		}
		out_add(o, v + i, word);
		col += word;
		i += word;
		while (v[i] == ' ')
			i++;
	}
	if (col > 0)
		out_str(o, "\r\n");
	free(v);
}

/* "mx.b" from "mx.b[192.0.2.1]:25". */
static char *
remote_name(const char *host)
{
	size_t n = strcspn(host, "[:");

	return xstrndup(host, n);
}

/* The address type of an RFC 3464 address field (RFC 6533 for UTF-8). */
static const char *
addr_type(const char *addr)
{
	return is_8bit(addr) ? "utf-8" : "rfc822";
}

static size_t
header_block_len(const char *m, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (m[i] == '\n' && m[i + 1] == '\n')
			return i + 1;
		if (m[i] == '\n' && i + 2 < len && m[i + 1] == '\r' &&
		    m[i + 2] == '\n')
			return i + 1;
	}
	return len;
}

static bool
has_long_line(const char *m, size_t len)
{
	size_t run = 0;

	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\n') {
			run = 0;
			continue;
		}
		if (++run > DSN_LINE_MAX)
			return true;
	}
	return false;
}

static bool
has_8bit_bytes(const char *m, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)m[i] >= 0x80)
			return true;
	return false;
}

static const char *
subject_of(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "Undelivered Mail Returned to Sender";
	case DSN_ACTION_DELAYED:
		return "Delayed Mail (still being retried)";
	case DSN_ACTION_DELIVERED:
		return "Successful Mail Delivery Report";
	}
	return "Delivery Status Notification";
}

static const char *
action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED: return "failed";
	case DSN_ACTION_DELAYED: return "delayed";
	case DSN_ACTION_DELIVERED: return "delivered";
	}
	return "failed";
}

static void
out_explanation(struct out *o, const struct dsn_report *r)
{
	enum dsn_action a = r->n_rcpts > 0 ? r->rcpts[0].action : DSN_ACTION_FAILED;

	out_fmt(o, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
	switch (a) {
	case DSN_ACTION_FAILED:
		out_str(o, "I'm sorry to have to inform you that your message "
		    "could not\r\nbe delivered to one or more recipients. It's "
		    "attached below.\r\n\r\nFor further assistance, please send "
		    "mail to postmaster.\r\n\r\nIf you do so, please include this "
		    "problem report. You can\r\ndelete your own text from the "
		    "attached returned message.\r\n\r\n");
		break;
	case DSN_ACTION_DELAYED:
		out_str(o, "Your message has not been delivered yet to the "
		    "recipients below.\r\nThe mail system will keep trying "
		    "until the time given in the report;\r\nyou need not "
		    "resend it.\r\n\r\n");
		break;
	case DSN_ACTION_DELIVERED:
		out_str(o, "Your message was successfully delivered to the "
		    "destination(s)\r\nlisted below, as you asked with "
		    "NOTIFY=SUCCESS.\r\n\r\n");
		break;
	}
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		char *line, *host = rc->remote_host && *rc->remote_host ?
		    clean(rc->remote_host) : NULL;

		if (rc->code != 0 && host != NULL)
			line = xasprintf("<%s>: host %s said: %u %s %s", rc->address,
			    host, rc->code, rc->status,
			    text_after_status(rc->text, rc->status));
		else if (rc->text != NULL && *rc->text != '\0')
			line = xasprintf("<%s>: %s", rc->address, rc->text);
		else
			line = xasprintf("<%s>: %s", rc->address,
			    a == DSN_ACTION_DELIVERED ? "delivery successful" :
			    "delivery failed");
		out_wrapped(o, line, 0);
		out_str(o, "\r\n");
		free(line);
		free(host);
	}
}

char *
dsn_compose(const struct dsn_report *r, size_t *len, bool *eightbit)
{
	struct out o = { 0 };
	char date[64], *v;
	size_t hlen = header_block_len(r->original, r->original_len);
	bool full = r->return_full && r->original_len <= r->full_limit &&
	    !has_long_line(r->original, r->original_len);
	enum dsn_action a = r->n_rcpts > 0 ? r->rcpts[0].action : DSN_ACTION_FAILED;
	size_t returned = full ? r->original_len : hlen;

	*eightbit = has_8bit_bytes(r->original, returned) || is_8bit(r->to);
	for (size_t i = 0; i < r->n_rcpts; i++)
		if (is_8bit(r->rcpts[i].address))
			*eightbit = true;

	/* -- the report's own header -- */
	dsn_format_date(r->date, date, sizeof(date));
	out_field(&o, "Date", date);
	v = xasprintf("Mail Delivery System <%s>", r->postmaster);
	out_field(&o, "From", v);
	free(v);
	v = xasprintf("<%s>", r->to);
	out_field(&o, "To", v);
	free(v);
	out_field(&o, "Subject", subject_of(a));
	v = xasprintf("<%s>", r->message_id);
	out_field(&o, "Message-ID", v);
	free(v);
	out_field(&o, "Auto-Submitted", "auto-replied");
	out_field(&o, "MIME-Version", "1.0");
	v = xasprintf("multipart/report; report-type=delivery-status; "
	    "boundary=\"%s\"", r->boundary);
	out_field(&o, "Content-Type", v);
	free(v);
	out_field(&o, "Content-Transfer-Encoding", *eightbit ? "8bit" : "7bit");
	out_str(&o, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	/* -- 1: the explanation -- */
	out_fmt(&o, "--%s\r\n", r->boundary);
	out_field(&o, "Content-Description", "Notification");
	out_field(&o, "Content-Type", "text/plain; charset=utf-8");
	out_str(&o, "\r\n");
	out_explanation(&o, r);

	/* -- 2: message/delivery-status -- */
	out_fmt(&o, "--%s\r\n", r->boundary);
	out_field(&o, "Content-Description", "Delivery report");
	out_field(&o, "Content-Type", "message/delivery-status");
	out_str(&o, "\r\n");
	v = xasprintf("dns; %s", r->reporting_mta);
	out_field(&o, "Reporting-MTA", v);
	free(v);
	if (r->envid != NULL && *r->envid != '\0')
		out_field(&o, "Original-Envelope-Id", r->envid);
	dsn_format_date(r->arrival, date, sizeof(date));
	out_field(&o, "Arrival-Date", date);
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];

		out_str(&o, "\r\n");
		v = xasprintf("%s; %s", addr_type(rc->address), rc->address);
		out_field(&o, "Final-Recipient", v);
		free(v);
		if (rc->orcpt != NULL && *rc->orcpt != '\0') {
			/* ORCPT is "type;address": keep its type. */
			const char *semi = strchr(rc->orcpt, ';');

			if (semi != NULL) {
				char *type = xstrndup(rc->orcpt, (size_t)(semi - rc->orcpt));

				semi++;
				while (*semi == ' ')
					semi++;
				v = xasprintf("%s; %s", type, semi);
				free(type);
			} else {
				v = xasprintf("rfc822; %s", rc->orcpt);
			}
			out_field(&o, "Original-Recipient", v);
			free(v);
		}
		out_field(&o, "Action", action_name(rc->action));
		out_field(&o, "Status", rc->status);
		if (rc->remote_host != NULL && *rc->remote_host != '\0') {
			char *name = remote_name(rc->remote_host);

			v = xasprintf("dns; %s", name);
			out_field(&o, "Remote-MTA", v);
			free(v);
			free(name);
		}
		if (rc->code != 0)
			v = xasprintf("smtp; %u %s %s", rc->code, rc->status,
			    text_after_status(rc->text, rc->status));
		else if (rc->text != NULL && *rc->text != '\0')
			v = xasprintf("X-tern; %s", rc->text);
		else
			v = NULL;
		if (v != NULL) {
			out_field(&o, "Diagnostic-Code", v);
			free(v);
		}
		if (rc->last_attempt != 0) {
			dsn_format_date(rc->last_attempt, date, sizeof(date));
			out_field(&o, "Last-Attempt-Date", date);
		}
		if (rc->action == DSN_ACTION_DELAYED && rc->will_retry_until != 0) {
			dsn_format_date(rc->will_retry_until, date, sizeof(date));
			out_field(&o, "Will-Retry-Until", date);
		}
	}
	out_str(&o, "\r\n");

	/* -- 3: the returned message -- */
	out_fmt(&o, "--%s\r\n", r->boundary);
	out_field(&o, "Content-Description", full ? "Undelivered Message" :
	    "Undelivered Message Headers");
	out_field(&o, "Content-Type", full ? "message/rfc822" :
	    "text/rfc822-headers");
	if (*eightbit)
		out_field(&o, "Content-Transfer-Encoding", "8bit");
	out_str(&o, "\r\n");
	out_add(&o, r->original, returned);
	if (returned > 0 && r->original[returned - 1] != '\n')
		out_str(&o, "\r\n");
	out_fmt(&o, "\r\n--%s--\r\n", r->boundary);
	*len = o.len;
	return o.data;
}
