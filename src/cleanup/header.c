/*
 * header.c - header fields as tern-cleanup holds them: the list, name
 * matching, unfolding and a small RFC 5322 address-list reader that finds
 * the From mailbox's domain. Pure code; runs in tern-cleanup.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "header.h"
#include "util.h"

void
header_list_init(struct header_list *h)
{
	memset(h, 0, sizeof(*h));
}

void
header_list_free(struct header_list *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->v[i].text);
	free(h->v);
	memset(h, 0, sizeof(*h));
}

void
header_list_append(struct header_list *h, const char *text, size_t len,
    size_t name_len)
{
	struct header_field *f;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 16;
		h->v = xreallocarray(h->v, h->cap, sizeof(*h->v));
	}
	f = &h->v[h->n++];
	f->text = xmalloc(len + 1);
	memcpy(f->text, text, len);
	f->text[len] = '\0';
	f->len = len;
	f->name_len = name_len;
	f->removed = false;
	h->bytes += len;
}

void
header_list_continue(struct header_list *h, const char *line, size_t len)
{
	struct header_field *f;

	if (h->n == 0)
		return;
	f = &h->v[h->n - 1];
	f->text = xrealloc(f->text, f->len + 2 + len + 1);
	memcpy(f->text + f->len, "\r\n", 2);
	memcpy(f->text + f->len + 2, line, len);
	f->len += 2 + len;
	f->text[f->len] = '\0';
	h->bytes += 2 + len;
}

size_t
header_name_len(const char *line, size_t len)
{
	size_t i, name;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == ':' || c == ' ' || c == '\t')
			break;
		if (c < 33 || c > 126)
			return 0;
	}
	name = i;
	if (name == 0)
		return 0;
	/* The obsolete form allows white space before the colon. */
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] != ':')
		return 0;
	return name;
}

bool
is_header_named(const struct header_field *f, const char *name)
{
	size_t n = strlen(name);

	if (f->name_len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char a = f->text[i], b = name[i];

		if (a >= 'A' && a <= 'Z')
			a = (char)(a - 'A' + 'a');
		if (b >= 'A' && b <= 'Z')
			b = (char)(b - 'A' + 'a');
		if (a != b)
			return false;
	}
	return true;
}

size_t
header_count(const struct header_list *h, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < h->n; i++)
		if (!h->v[i].removed && is_header_named(&h->v[i], name))
			n++;
	return n;
}

const struct header_field *
header_find(const struct header_list *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (!h->v[i].removed && is_header_named(&h->v[i], name))
			return &h->v[i];
	return NULL;
}

char *
header_value_unfolded(const struct header_field *f)
{
	const char *p = memchr(f->text, ':', f->len);
	size_t i, n = 0, len;
	char *out;

	if (p == NULL)
		return xstrdup("");
	p++;
	len = f->len - (size_t)(p - f->text);
	out = xmalloc(len + 1);
	for (i = 0; i < len; i++) {
		if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') {
			i++;
			continue;
		}
		out[n++] = p[i];
	}
	out[n] = '\0';
	/* Trim surrounding white space. */
	while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t'))
		out[--n] = '\0';
	i = 0;
	while (out[i] == ' ' || out[i] == '\t')
		i++;
	memmove(out, out + i, n - i + 1);
	return out;
}

/*
 * Copies value with comments blanked out (nested, with quoted pairs),
 * keeping quoted strings as they are.
 */
static char *
strip_comments(const char *value)
{
	size_t len = strlen(value), i;
	char *out = xmalloc(len + 1);
	int depth = 0;
	bool quoted = false;

	for (i = 0; i < len; i++) {
		char c = value[i];

		if (quoted) {
			out[i] = c;
			if (c == '\\' && i + 1 < len) {
				out[i + 1] = value[i + 1];
				i++;
			} else if (c == '"') {
				quoted = false;
			}
			continue;
		}
		if (depth > 0) {
			out[i] = ' ';
			if (c == '\\' && i + 1 < len)
				out[++i] = ' ';
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (c == '(') {
			depth = 1;
			out[i] = ' ';
			continue;
		}
		if (c == '"')
			quoted = true;
		out[i] = c;
	}
	out[len] = '\0';
	return out;
}

/* The first c in [p, p + n) outside a quoted string, or NULL. */
static const char *
find_unquoted(const char *p, size_t n, char c)
{
	bool quoted = false;

	for (size_t i = 0; i < n; i++) {
		if (quoted) {
			if (p[i] == '\\' && i + 1 < n)
				i++;
			else if (p[i] == '"')
				quoted = false;
		} else if (p[i] == '"') {
			quoted = true;
		} else if (p[i] == c) {
			return p + i;
		}
	}
	return NULL;
}

/* Calls fn for each mailbox's addr-spec in an address list, in order;
 * stops when fn returns true. Returns the number of mailboxes seen. */
static size_t
each_mailbox(const char *value, bool (*fn)(void *arg, const char *spec,
    size_t len), void *arg)
{
	char *s = strip_comments(value);
	size_t i = 0, start = 0, n = 0, len = strlen(s);
	bool quoted = false, angle = false;

	for (i = 0; i <= len; i++) {
		char c = i < len ? s[i] : ',';

		if (quoted) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '"')
				quoted = false;
			continue;
		}
		if (c == '"') {
			quoted = true;
			continue;
		}
		if (c == '<')
			angle = true;
		else if (c == '>')
			angle = false;
		if (angle)
			continue;
		if (c == ':') {
			/* A group's display name is not a mailbox. */
			start = i + 1;
			continue;
		}
		if (c != ',' && c != ';')
			continue;
		{
			const char *m = s + start, *spec, *lt;
			size_t mlen = i - start, slen;

			/* A '<' or '>' in a quoted display name or local part
			 * is text, not the angle address. */
			lt = find_unquoted(m, mlen, '<');
			if (lt != NULL) {
				const char *gt = find_unquoted(lt, mlen -
				    (size_t)(lt - m), '>');
				const char *colon;

				spec = lt + 1;
				slen = gt != NULL ? (size_t)(gt - spec)
				    : mlen - (size_t)(spec - m);
				/* An obsolete route "<@a,@b:x@y>". */
				colon = find_unquoted(spec, slen, ':');
				if (colon != NULL && spec[0] == '@') {
					slen -= (size_t)(colon + 1 - spec);
					spec = colon + 1;
				}
			} else {
				spec = m;
				slen = mlen;
			}
			while (slen > 0 && (*spec == ' ' || *spec == '\t')) {
				spec++;
				slen--;
			}
			while (slen > 0 && (spec[slen - 1] == ' ' ||
			    spec[slen - 1] == '\t'))
				slen--;
			if (slen > 0) {
				n++;
				if (fn != NULL && fn(arg, spec, slen))
					break;
			}
		}
		start = i + 1;
	}
	free(s);
	return n;
}

struct domain_out {
	char *buf;
	size_t size;
	bool found;
};

static bool
take_domain(void *arg, const char *spec, size_t len)
{
	struct domain_out *o = arg;
	const char *at = NULL;
	bool quoted = false;
	size_t i, dlen;

	for (i = 0; i < len; i++) {
		if (quoted) {
			if (spec[i] == '\\')
				i++;
			else if (spec[i] == '"')
				quoted = false;
		} else if (spec[i] == '"') {
			quoted = true;
		} else if (spec[i] == '@') {
			at = spec + i;
		}
	}
	if (at == NULL)
		return true;
	at++;
	dlen = len - (size_t)(at - spec);
	while (dlen > 0 && (*at == ' ' || *at == '\t')) {
		at++;
		dlen--;
	}
	if (dlen == 0 || dlen >= o->size || memchr(at, ' ', dlen) != NULL)
		return true;
	memcpy(o->buf, at, dlen);
	o->buf[dlen] = '\0';
	ascii_lowercase(o->buf);
	o->found = true;
	return true;
}

int
header_mailbox_domain(const char *value, char *buf, size_t size)
{
	struct domain_out o = { buf, size, false };

	(void)each_mailbox(value, take_domain, &o);
	return o.found ? 0 : -1;
}

size_t
header_mailbox_count(const char *value)
{
	return each_mailbox(value, NULL, NULL);
}
