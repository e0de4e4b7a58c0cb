/*
 * message.c - the pure message work of the sendmail command: stdin to
 * CRLF content, -t recipient extraction, From header, argument checks.
 * Runs as the invoking user (see message.h).
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "util.h"

void
sm_buf_append(struct sm_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
sm_buf_free(struct sm_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void
sm_list_add(struct sm_list *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrdup(s);
}

void
sm_list_free(struct sm_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ---- stdin to content ---- */

void
sm_normalizer_init(struct sm_normalizer *n, bool dot_ends)
{
	memset(n, 0, sizeof(*n));
	n->dot_ends = dot_ends;
	n->at_line_start = true;
}

void
sm_normalizer_free(struct sm_normalizer *n)
{
	sm_buf_free(&n->line);
}

/* One complete line (without its end) goes out with CRLF. */
static void
sm_emit_line(struct sm_normalizer *n, struct sm_buf *out)
{
	if (n->dot_ends && n->line.len == 1 && n->line.data[0] == '.') {
		n->ended = true;
	} else {
		sm_buf_append(out, n->line.data, n->line.len);
		sm_buf_append(out, "\r\n", 2);
	}
	n->line.len = 0;
}

int
sm_normalizer_feed(struct sm_normalizer *n, const char *p, size_t len,
    struct sm_buf *out)
{
	for (size_t i = 0; i < len && !n->ended; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\0') {
			n->saw_nul = true;
			return -1;
		}
		if (c >= 0x80)
			n->eightbit = true;
		if (n->pending_cr) {
			n->pending_cr = false;
			if (c == '\n') {
				sm_emit_line(n, out);
				continue;
			}
			/* A CR alone stays part of the line. */
			sm_buf_append(&n->line, "\r", 1);
		}
		if (c == '\r') {
			n->pending_cr = true;
			continue;
		}
		if (c == '\n') {
			sm_emit_line(n, out);
			continue;
		}
		sm_buf_append(&n->line, &p[i], 1);
	}
	return n->saw_nul ? -1 : 0;
}

int
sm_normalizer_finish(struct sm_normalizer *n, struct sm_buf *out)
{
	if (n->saw_nul)
		return -1;
	if (n->ended)
		return 0;
	if (n->pending_cr) {
		n->pending_cr = false;
		sm_emit_line(n, out);
		return 0;
	}
	if (n->line.len > 0)
		sm_emit_line(n, out);
	return 0;
}

/* ---- headers ---- */

size_t
sm_header_length(const char *content, size_t len)
{
	size_t i = 0;

	while (i < len) {
		const char *eol = memchr(content + i, '\n', len - i);
		size_t next = eol ? (size_t)(eol - content) + 1 : len;

		/* An empty line (CRLF) ends the header block. */
		if (next - i <= 2 && (content[i] == '\r' || content[i] == '\n'))
			return next;
		/* A line that is not a field or a continuation starts the body. */
		if (content[i] != ' ' && content[i] != '\t') {
			size_t j = i;

			while (j < next && content[j] > ' ' && content[j] < 127 &&
			    content[j] != ':')
				j++;
			if (j == i || j >= next || content[j] != ':')
				return i;
		}
		i = next;
	}
	return len;
}

/* Calls fn for each header field: name, its length, the unfolded value. */
typedef void (*sm_field_fn)(void *arg, const char *name, size_t name_len,
    const char *start, size_t field_len, const char *value);

static void
sm_each_field(const char *content, size_t hdr_len, sm_field_fn fn, void *arg)
{
	size_t i = 0;

	while (i < hdr_len) {
		size_t start = i, end, name_len;
		const char *colon;
		struct sm_buf value = { 0 };

		if (content[i] == '\r' || content[i] == '\n')
			break;
		/* The field and its continuation lines. */
		end = i;
		do {
			const char *eol = memchr(content + end, '\n', hdr_len - end);

			end = eol ? (size_t)(eol - content) + 1 : hdr_len;
		} while (end < hdr_len && (content[end] == ' ' || content[end] == '\t'));
		colon = memchr(content + start, ':', end - start);
		if (colon == NULL) {
			i = end;
			continue;
		}
		name_len = (size_t)(colon - (content + start));
		for (const char *p = colon + 1; p < content + end; p++)
			if (*p != '\r' && *p != '\n')
				sm_buf_append(&value, p, 1);
		sm_buf_append(&value, "", 0);
		fn(arg, content + start, name_len, content + start, end - start,
		    value.data ? value.data : "");
		sm_buf_free(&value);
		i = end;
	}
}

struct sm_has_arg {
	const char *name;
	bool found;
};

static void
sm_has_cb(void *arg, const char *name, size_t name_len, const char *start,
    size_t field_len, const char *value)
{
	struct sm_has_arg *a = arg;

	(void)start;
	(void)field_len;
	(void)value;
	if (strlen(a->name) == name_len &&
	    has_ascii_prefix_ci(name, a->name))
		a->found = true;
}

bool
has_sm_header(const char *content, size_t hdr_len, const char *name)
{
	struct sm_has_arg a = { name, false };

	sm_each_field(content, hdr_len, sm_has_cb, &a);
	return a.found;
}

static bool
is_field_named(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && has_ascii_prefix_ci(name, want);
}

/* ---- address lists ---- */

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Adds the mailbox collected so far (angle address if any). */
static int
sm_finish_mailbox(struct sm_buf *plain, struct sm_buf *angle, bool had_angle,
    struct sm_list *out, const char **why)
{
	struct sm_buf *src = had_angle ? angle : plain;
	char *a, *colon;
	size_t s = 0, e;
	int rc = 0;

	a = src->data;
	e = src->len;
	while (s < e && is_wsp(a[s]))
		s++;
	while (e > s && is_wsp(a[e - 1]))
		e--;
	if (e > s) {
		char *addr = xstrndup(a + s, e - s);
		char *clean = addr;

		/* An obsolete source route "@a,@b:x@y" keeps only x@y. */
		if (addr[0] == '@' && (colon = strchr(addr, ':')) != NULL)
			clean = colon + 1;
		if (!is_sm_address(clean)) {
			*why = "bad address in a header";
			rc = -1;
		} else {
			sm_list_add(out, clean);
		}
		free(addr);
	}
	plain->len = 0;
	angle->len = 0;
	return rc;
}

int
sm_parse_address_list(const char *s, size_t len, struct sm_list *out,
    const char **why)
{
	struct sm_buf plain = { 0 }, angle = { 0 };
	bool in_angle = false, had_angle = false, in_group = false;
	int rc = 0;
	size_t i = 0;

	while (i < len && rc == 0) {
		char c = s[i];

		if (c == '(') {
			int depth = 0;

			/* A comment, perhaps nested; dropped. */
			for (; i < len; i++) {
				if (s[i] == '\\' && i + 1 < len) {
					i++;
					continue;
				}
				if (s[i] == '(')
					depth++;
				else if (s[i] == ')' && --depth == 0)
					break;
			}
			if (i >= len) {
				*why = "unterminated comment in an address";
				rc = -1;
				break;
			}
			i++;
			continue;
		}
		if (c == '"') {
			struct sm_buf *dst = in_angle ? &angle : &plain;
			size_t j = i + 1;

			while (j < len && s[j] != '"') {
				if (s[j] == '\\' && j + 1 < len)
					j++;
				j++;
			}
			if (j >= len) {
				*why = "unterminated quoted string in an address";
				rc = -1;
				break;
			}
			sm_buf_append(dst, s + i, j - i + 1);
			i = j + 1;
			continue;
		}
		if (in_angle) {
			if (c == '>')
				in_angle = false;
			else
				sm_buf_append(&angle, &c, 1);
			i++;
			continue;
		}
		switch (c) {
		case '<':
			in_angle = true;
			had_angle = true;
			angle.len = 0;
			break;
		case ',':
			rc = sm_finish_mailbox(&plain, &angle, had_angle, out, why);
			had_angle = false;
			break;
		case ':':
			if (in_group) {
				*why = "nested group in an address list";
				rc = -1;
				break;
			}
			/* The group's display name is not an address. */
			in_group = true;
			plain.len = 0;
			had_angle = false;
			break;
		case ';':
			if (!in_group) {
				*why = "';' outside a group in an address list";
				rc = -1;
				break;
			}
			rc = sm_finish_mailbox(&plain, &angle, had_angle, out, why);
			had_angle = false;
			in_group = false;
			break;
		default:
			/* Display-name words before an angle address are dropped
			 * when the angle address arrives; kept otherwise. */
			sm_buf_append(&plain, &c, 1);
			break;
		}
		i++;
	}
	if (rc == 0 && in_angle) {
		*why = "unterminated '<' in an address";
		rc = -1;
	}
	if (rc == 0)
		rc = sm_finish_mailbox(&plain, &angle, had_angle, out, why);
	sm_buf_free(&plain);
	sm_buf_free(&angle);
	return rc;
}

struct sm_extract_arg {
	bool resent;			/* use the Resent- fields */
	bool any_resent;
	struct sm_list *rcpts;
	struct sm_buf kept;		/* the header without Bcc */
	const char *why;
	int rc;
};

static void
sm_resent_cb(void *arg, const char *name, size_t name_len, const char *start,
    size_t field_len, const char *value)
{
	struct sm_extract_arg *a = arg;

	(void)start;
	(void)field_len;
	(void)value;
	if (name_len > 7 && has_ascii_prefix_ci(name, "resent-"))
		a->any_resent = true;
}

static void
sm_extract_cb(void *arg, const char *name, size_t name_len, const char *start,
    size_t field_len, const char *value)
{
	struct sm_extract_arg *a = arg;
	const char *to = a->resent ? "resent-to" : "to";
	const char *cc = a->resent ? "resent-cc" : "cc";
	const char *bcc = a->resent ? "resent-bcc" : "bcc";
	bool is_bcc = is_field_named(name, name_len, bcc);

	if (a->rc == 0 && (is_field_named(name, name_len, to) ||
	    is_field_named(name, name_len, cc) || is_bcc))
		a->rc = sm_parse_address_list(value, strlen(value), a->rcpts, &a->why);
	if (!is_bcc)
		sm_buf_append(&a->kept, start, field_len);
}

int
sm_extract_recipients(struct sm_buf *content, struct sm_list *rcpts,
    const char **why)
{
	size_t hdr_len = sm_header_length(content->data, content->len);
	size_t fields_len = hdr_len;
	struct sm_extract_arg a;
	struct sm_buf rebuilt = { 0 };

	memset(&a, 0, sizeof(a));
	a.rcpts = rcpts;
	sm_each_field(content->data, hdr_len, sm_resent_cb, &a);
	a.resent = a.any_resent;
	sm_each_field(content->data, hdr_len, sm_extract_cb, &a);
	if (a.rc == -1) {
		*why = a.why;
		sm_buf_free(&a.kept);
		return -1;
	}
	/* The fields end where the empty line (if any) begins. */
	if (fields_len >= 2 && content->data[fields_len - 1] == '\n' &&
	    content->data[fields_len - 2] == '\r' &&
	    (fields_len == 2 || content->data[fields_len - 3] == '\n'))
		fields_len -= 2;
	else if (fields_len >= 1 && content->data[fields_len - 1] == '\n' &&
	    (fields_len == 1 || content->data[fields_len - 2] == '\n'))
		fields_len -= 1;
	sm_buf_append(&rebuilt, a.kept.data, a.kept.len);
	sm_buf_append(&rebuilt, content->data + fields_len,
	    content->len - fields_len);
	sm_buf_free(&a.kept);
	sm_buf_free(content);
	*content = rebuilt;
	if (content->data == NULL)
		sm_buf_append(content, "", 0);
	return 0;
}

char *
sm_from_header(const char *full_name, const char *sender)
{
	struct sm_buf b = { 0 };
	char *out;

	if (full_name == NULL || *full_name == '\0')
		return xasprintf("From: %s\r\n", *sender ? sender : "<>");
	if (strlen(full_name) > SM_NAME_MAX)
		return NULL;
	sm_buf_append(&b, "From: \"", 7);
	for (const char *p = full_name; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f)
			goto bad;
		if (c == '"' || c == '\\')
			sm_buf_append(&b, "\\", 1);
		sm_buf_append(&b, p, 1);
	}
	sm_buf_append(&b, "\" <", 3);
	sm_buf_append(&b, sender, strlen(sender));
	sm_buf_append(&b, ">\r\n", 3);
	out = b.data;
	return out;
bad:
	sm_buf_free(&b);
	return NULL;
}

void
sm_prepend_header(struct sm_buf *content, const char *field)
{
	struct sm_buf b = { 0 };

	sm_buf_append(&b, field, strlen(field));
	sm_buf_append(&b, content->data, content->len);
	sm_buf_free(content);
	*content = b;
}

bool
is_sm_address(const char *s)
{
	size_t len = strlen(s), ats = 0;
	bool quoted = false;
	const char *at = NULL;

	if (len == 0 || len > SM_ADDRESS_MAX)
		return false;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f)
			return false;
		if (c == '"') {
			quoted = !quoted;
			continue;
		}
		if (quoted) {
			if (c == '\\' && p[1] != '\0')
				p++;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '<' || c == '>' || c == ',' ||
		    c == ';' || c == '(' || c == ')' || c == '\\')
			return false;
		if (c == '@') {
			ats++;
			at = p;
		}
	}
	if (quoted || ats > 1)
		return false;
	if (at != NULL && (at == s || at[1] == '\0'))
		return false;
	return true;
}

char *
sm_qualify(const char *addr, const char *domain)
{
	if (strchr(addr, '@') != NULL)
		return xstrdup(addr);
	return xasprintf("%s@%s", addr, domain);
}

bool
has_sm_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}
