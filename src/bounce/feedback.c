/*
 * feedback.c - inbound DSN, ARF and plain-text bounce parsing (see
 * feedback.h). Runs in tern-bounce on untrusted mail; pure.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback.h"
#include "util.h"

#define MIME_MAX_DEPTH	3
#define MIME_MAX_PARTS	50

/* A byte range of the input. */
struct span {
	const char *p;
	size_t n;
};

const char *
feedback_kind_name(enum feedback_kind k)
{
	switch (k) {
	case FEEDBACK_NONE: return "none";
	case FEEDBACK_FAILED: return "failed";
	case FEEDBACK_DELAYED: return "delayed";
	case FEEDBACK_DELIVERED: return "delivered";
	case FEEDBACK_COMPLAINT: return "complaint";
	case FEEDBACK_OTHER_REPORT: return "other-report";
	}
	return "none";
}

/* ---- header blocks ---- */

/* Splits an entity into header block and body at the first empty line. */
static void
split_entity(struct span e, struct span *hdr, struct span *body)
{
	size_t i = 0;

	while (i < e.n) {
		const char *eol = memchr(e.p + i, '\n', e.n - i);
		size_t next = eol ? (size_t)(eol - e.p) + 1 : e.n;
		size_t linelen = next - i;

		if (linelen == 1 || (linelen == 2 && e.p[i] == '\r')) {
			hdr->p = e.p;
			hdr->n = i;
			body->p = e.p + next;
			body->n = e.n - next;
			return;
		}
		i = next;
	}
	*hdr = e;
	body->p = e.p + e.n;
	body->n = 0;
}

/*
 * Finds field name in a header block (the first one from *pos on) and
 * returns its unfolded value (allocated, at most 4000 bytes), or NULL.
 * *pos moves past it, so callers can iterate over repeated fields.
 */
static char *
header_next(struct span h, const char *name, size_t *pos)
{
	size_t nlen = strlen(name), i = *pos;

	while (i < h.n) {
		size_t start = i, end = i;
		const char *colon;

		do {
			const char *eol = memchr(h.p + end, '\n', h.n - end);

			end = eol ? (size_t)(eol - h.p) + 1 : h.n;
		} while (end < h.n && (h.p[end] == ' ' || h.p[end] == '\t'));
		i = end;
		colon = memchr(h.p + start, ':', end - start);
		if (colon == NULL)
			continue;
		/* Field names never contain blanks; "Name :" is tolerated. */
		{
			size_t fl = (size_t)(colon - (h.p + start));

			while (fl > 0 && (h.p[start + fl - 1] == ' ' ||
			    h.p[start + fl - 1] == '\t'))
				fl--;
			if (fl != nlen || !has_ascii_prefix_ci(h.p + start, name))
				continue;
		}
		{
			size_t vlen = 0, cap = end - (size_t)(colon + 1 - h.p);
			char *v;
			const char *p;

			if (cap > 4000)
				cap = 4000;
			v = xmalloc(cap + 1);
			for (p = colon + 1; p < h.p + end && vlen < cap; p++) {
				if (*p == '\r' || *p == '\n')
					continue;
				v[vlen++] = *p == '\t' ? ' ' : *p;
			}
			v[vlen] = '\0';
			*pos = i;
			/* Trim. */
			while (vlen > 0 && v[vlen - 1] == ' ')
				v[--vlen] = '\0';
			if (v[0] == ' ')
				memmove(v, v + strspn(v, " "), strlen(v + strspn(v, " ")) + 1);
			return v;
		}
	}
	*pos = h.n;
	return NULL;
}

static char *
header_get(struct span h, const char *name)
{
	size_t pos = 0;

	return header_next(h, name, &pos);
}

/* ---- Content-Type ---- */

struct ctype {
	char type[64];			/* "multipart/report", lower case */
	char boundary[72];
	char report_type[32];
};

/* Reads one parameter value (token or quoted string) into out. */
static const char *
param_value(const char *p, char *out, size_t size)
{
	size_t o = 0;

	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			if (o + 1 < size)
				out[o++] = *p;
			p++;
		}
		if (*p == '"')
			p++;
	} else {
		while (*p && *p != ';' && *p != ' ') {
			if (o + 1 < size)
				out[o++] = *p;
			p++;
		}
	}
	out[o] = '\0';
	return p;
}

static void
parse_ctype(const char *v, struct ctype *ct)
{
	const char *p;
	size_t n;

	memset(ct, 0, sizeof(*ct));
	if (v == NULL) {
		tern_strlcpy(ct->type, "text/plain", sizeof(ct->type));
		return;
	}
	n = strcspn(v, "; ");
	if (n >= sizeof(ct->type))
		n = sizeof(ct->type) - 1;
	memcpy(ct->type, v, n);
	ct->type[n] = '\0';
	ascii_lowercase(ct->type);
	p = v + n;
	while (*p) {
		char name[32], value[128];
		size_t k;

		while (*p == ';' || *p == ' ')
			p++;
		k = strcspn(p, "=; ");
		if (p[k] != '=') {
			p += k;
			continue;
		}
		if (k >= sizeof(name))
			k = sizeof(name) - 1;
		memcpy(name, p, k);
		name[k] = '\0';
		p += strcspn(p, "=") + 1;
		p = param_value(p, value, sizeof(value));
		if (is_ascii_strcaseeq(name, "boundary"))
			tern_strlcpy(ct->boundary, value, sizeof(ct->boundary));
		else if (is_ascii_strcaseeq(name, "report-type")) {
			tern_strlcpy(ct->report_type, value, sizeof(ct->report_type));
			ascii_lowercase(ct->report_type);
		}
	}
}

/* ---- multipart ---- */

/* True when the line at p (length n, without its end) is --b or --b--. */
static int
delimiter_kind(const char *p, size_t n, const char *b, size_t blen)
{
	if (n < blen + 2 || p[0] != '-' || p[1] != '-' ||
	    memcmp(p + 2, b, blen) != 0)
		return 0;
	p += blen + 2;
	n -= blen + 2;
	if (n >= 2 && p[0] == '-' && p[1] == '-')
		return 2;
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return 0;
	return 1;
}

/* Splits a multipart body into its parts; returns how many. */
static size_t
split_parts(struct span body, const char *boundary, struct span *parts,
    size_t max)
{
	size_t blen = strlen(boundary), i = 0, n = 0;
	const char *part_start = NULL;

	if (blen == 0)
		return 0;
	while (i < body.n) {
		const char *eol = memchr(body.p + i, '\n', body.n - i);
		size_t next = eol ? (size_t)(eol - body.p) + 1 : body.n;
		size_t linelen = (eol ? (size_t)(eol - body.p) : body.n) - i;
		int k = delimiter_kind(body.p + i, linelen, boundary, blen);

		if (k != 0) {
			if (part_start != NULL && n < max) {
				const char *end = body.p + i;

				/* The CRLF before the delimiter belongs to it. */
				if (end > part_start && end[-1] == '\n')
					end--;
				if (end > part_start && end[-1] == '\r')
					end--;
				parts[n].p = part_start;
				parts[n].n = (size_t)(end - part_start);
				n++;
			}
			if (k == 2)
				return n;
			part_start = body.p + next;
		}
		i = next;
	}
	/* A missing closing delimiter: keep the last part anyway. */
	if (part_start != NULL && n < max && part_start <= body.p + body.n) {
		parts[n].p = part_start;
		parts[n].n = (size_t)(body.p + body.n - part_start);
		n++;
	}
	return n;
}

/* ---- transfer encodings ---- */

static int
b64_value(char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Decodes a part's body as its Content-Transfer-Encoding says; the
 * result is allocated (NUL-terminated) and its length set. */
static char *
decode_body(struct span hdr, struct span body, size_t *len)
{
	char *cte = header_get(hdr, "Content-Transfer-Encoding");
	char *out = xmalloc(body.n + 1);
	size_t o = 0;

	if (cte != NULL && is_ascii_strcaseeq(cte, "base64")) {
		uint32_t acc = 0;
		int bits = 0;

		for (size_t i = 0; i < body.n; i++) {
			int v = b64_value(body.p[i]);

			if (body.p[i] == '=')
				break;
			if (v < 0)
				continue;
			acc = (acc << 6) | (uint32_t)v;
			bits += 6;
			if (bits >= 8) {
				out[o++] = (char)((acc >> (bits - 8)) & 0xff);
				bits -= 8;
			}
		}
	} else if (cte != NULL && is_ascii_strcaseeq(cte, "quoted-printable")) {
		for (size_t i = 0; i < body.n; i++) {
			char c = body.p[i];

			if (c == '=' && i + 1 < body.n && (body.p[i + 1] == '\n' ||
			    body.p[i + 1] == '\r')) {
				i++;
				if (body.p[i] == '\r' && i + 1 < body.n &&
				    body.p[i + 1] == '\n')
					i++;
				continue;
			}
			if (c == '=' && i + 2 < body.n) {
				char hex[3] = { body.p[i + 1], body.p[i + 2], 0 };
				char *end;
				long v = strtol(hex, &end, 16);

				if (*end == '\0' && hex[0] != '-' && hex[0] != '+' &&
				    hex[0] != ' ') {
					out[o++] = (char)v;
					i += 2;
					continue;
				}
			}
			out[o++] = c;
		}
	} else {
		memcpy(out, body.p, body.n);
		o = body.n;
	}
	out[o] = '\0';
	*len = o;
	free(cte);
	return out;
}

/* ---- small value parsers ---- */

/* "rfc822; <a@b>" -> "a@b" (type dropped, brackets and blanks trimmed). */
static void
typed_address(const char *v, char *out, size_t size)
{
	const char *semi = strchr(v, ';');
	const char *s = semi ? semi + 1 : v;
	size_t n;

	while (*s == ' ')
		s++;
	if (*s == '<')
		s++;
	n = strcspn(s, "> ");
	if (n >= size)
		n = 0;		/* too long to be an address of ours */
	memcpy(out, s, n);
	out[n] = '\0';
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = '\0';
}

/* The first token of a Status field if it is a valid "c.s.d". */
static void
status_value(const char *v, char *out, size_t size)
{
	size_t n = strcspn(v, " (");
	int dots = 0;
	bool ok = n > 0 && n < size && (v[0] == '2' || v[0] == '4' || v[0] == '5');

	for (size_t i = 0; ok && i < n; i++) {
		if (v[i] == '.')
			dots++;
		else if (v[i] < '0' || v[i] > '9')
			ok = false;
	}
	if (!ok || dots != 2 || v[1] != '.' || v[n - 1] == '.' ||
	    strstr(v, "..") != NULL) {
		out[0] = '\0';
		return;
	}
	memcpy(out, v, n);
	out[n] = '\0';
}

/* Copies a text value, control characters as spaces. */
static void
text_value(const char *v, char *out, size_t size)
{
	size_t n = strlen(v);

	if (n >= size)
		n = size - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)v[i] < 0x20 ? ' ' : v[i];
	out[n] = '\0';
}

/* A leading SMTP reply code of a diagnostic ("550 5.1.1 ..."), or 0. */
static unsigned
diagnostic_code(const char *d)
{
	if (d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' &&
	    d[2] >= '0' && d[2] <= '9' && (d[3] == ' ' || d[3] == '-' ||
	    d[3] == '\0'))
		return (unsigned)((d[0] - '0') * 100 + (d[1] - '0') * 10 +
		    (d[2] - '0'));
	return 0;
}

/* ---- message/delivery-status ---- */

/* Splits the report body into field groups at empty lines. */
static size_t
split_groups(struct span body, struct span *groups, size_t max)
{
	size_t i = 0, n = 0, start = 0;
	bool in_group = false;

	while (i <= body.n && n < max) {
		const char *eol = i < body.n ? memchr(body.p + i, '\n', body.n - i) : NULL;
		size_t next = eol ? (size_t)(eol - body.p) + 1 : body.n;
		size_t linelen = next - i;
		bool blank = i >= body.n || linelen == 0 || (linelen == 1 &&
		    body.p[i] == '\n') || (linelen == 2 && body.p[i] == '\r' &&
		    body.p[i + 1] == '\n');

		if (blank) {
			if (in_group) {
				groups[n].p = body.p + start;
				groups[n].n = i - start;
				n++;
				in_group = false;
			}
			if (i >= body.n)
				break;
		} else if (!in_group) {
			in_group = true;
			start = i;
		}
		i = next;
	}
	return n;
}

static void
parse_dsn_report(const char *text, size_t len, struct feedback_item *items,
    size_t max, size_t *n)
{
	struct span body = { text, len }, groups[FEEDBACK_MAX_ITEMS + 1];
	size_t ng = split_groups(body, groups, FEEDBACK_MAX_ITEMS + 1);

	/* Group 0 is per-message; each further one is a recipient. */
	for (size_t g = 1; g < ng && *n < max; g++) {
		struct feedback_item *it = &items[*n];
		char *v;

		memset(it, 0, sizeof(*it));
		it->format = FEEDBACK_FMT_DSN;
		if ((v = header_get(groups[g], "Final-Recipient")) != NULL) {
			typed_address(v, it->recipient, sizeof(it->recipient));
			free(v);
		}
		if ((v = header_get(groups[g], "Original-Recipient")) != NULL) {
			typed_address(v, it->original_recipient,
			    sizeof(it->original_recipient));
			free(v);
		}
		if ((v = header_get(groups[g], "Status")) != NULL) {
			status_value(v, it->status, sizeof(it->status));
			free(v);
		}
		if ((v = header_get(groups[g], "Diagnostic-Code")) != NULL) {
			const char *semi = strchr(v, ';');
			const char *d = semi ? semi + 1 : v;

			while (*d == ' ')
				d++;
			text_value(d, it->diagnostic, sizeof(it->diagnostic));
			it->code = diagnostic_code(it->diagnostic);
			free(v);
		}
		if ((v = header_get(groups[g], "Remote-MTA")) != NULL) {
			typed_address(v, it->remote_mta, sizeof(it->remote_mta));
			free(v);
		}
		if ((v = header_get(groups[g], "Action")) != NULL) {
			size_t k = strcspn(v, " (");

			v[k] = '\0';
			if (is_ascii_strcaseeq(v, "failed"))
				it->kind = FEEDBACK_FAILED;
			else if (is_ascii_strcaseeq(v, "delayed"))
				it->kind = FEEDBACK_DELAYED;
			else if (is_ascii_strcaseeq(v, "delivered") ||
			    is_ascii_strcaseeq(v, "relayed") ||
			    is_ascii_strcaseeq(v, "expanded"))
				it->kind = FEEDBACK_DELIVERED;
			free(v);
		}
		/* A group without an action or a recipient is not a recipient. */
		if (it->kind == FEEDBACK_NONE || (it->recipient[0] == '\0' &&
		    it->original_recipient[0] == '\0'))
			continue;
		if (it->status[0] == '\0')
			tern_strlcpy(it->status, it->kind == FEEDBACK_FAILED ?
			    "5.0.0" : it->kind == FEEDBACK_DELAYED ? "4.0.0" :
			    "2.0.0", sizeof(it->status));
		(*n)++;
	}
}

/* ---- ARF ---- */

/* The first address of a To: field of the returned message. */
static void
first_to(struct span returned, char *out, size_t size)
{
	struct span hdr, body;
	char *v;

	out[0] = '\0';
	split_entity(returned, &hdr, &body);
	v = header_get(hdr, "To");
	if (v == NULL)
		return;
	{
		char *lt = strchr(v, '<');
		const char *s = lt ? lt + 1 : v;
		size_t k;

		while (*s == ' ')
			s++;
		k = strcspn(s, ">, ");
		if (k < size && memchr(s, '@', k) != NULL) {
			memcpy(out, s, k);
			out[k] = '\0';
		}
	}
	free(v);
}

static void
parse_arf_report(const char *text, size_t len, const struct span *returned,
    struct feedback_item *items, size_t max, size_t *n)
{
	struct span h = { text, len };
	char *type = header_get(h, "Feedback-Type"), *v;
	enum feedback_kind kind = FEEDBACK_OTHER_REPORT;
	size_t pos = 0, first = *n;
	char ftype[32] = "";

	if (type != NULL) {
		size_t k = strcspn(type, " ;(");

		type[k] = '\0';
		text_value(type, ftype, sizeof(ftype));
		ascii_lowercase(ftype);
		if (strcmp(ftype, "abuse") == 0 || strcmp(ftype, "fraud") == 0)
			kind = FEEDBACK_COMPLAINT;
		free(type);
	}
	/* Original-Rcpt-To may repeat; Removal-Recipient is the older name. */
	while (*n < max && (v = header_next(h, "Original-Rcpt-To", &pos)) != NULL) {
		struct feedback_item *it = &items[(*n)++];

		memset(it, 0, sizeof(*it));
		typed_address(v, it->recipient, sizeof(it->recipient));
		free(v);
	}
	pos = 0;
	while (*n == first && *n < max &&
	    (v = header_next(h, "Removal-Recipient", &pos)) != NULL) {
		struct feedback_item *it = &items[(*n)++];

		memset(it, 0, sizeof(*it));
		typed_address(v, it->recipient, sizeof(it->recipient));
		free(v);
	}
	if (*n == first && *n < max) {
		struct feedback_item *it = &items[(*n)++];

		memset(it, 0, sizeof(*it));
		if (returned != NULL)
			first_to(*returned, it->recipient, sizeof(it->recipient));
	}
	for (size_t i = first; i < *n; i++) {
		items[i].kind = kind;
		items[i].format = FEEDBACK_FMT_ARF;
		tern_strlcpy(items[i].feedback_type, ftype,
		    sizeof(items[i].feedback_type));
	}
}

/* ---- plain-text bounces ---- */

static bool
is_local_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || strchr(".!#$%&'*+/=?^_`{|}~-", c) != NULL;
}

static bool
is_domain_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-';
}

/* Finds the first plausible address in [p, p+n); false when none. */
static bool
find_address(const char *p, size_t n, char *out, size_t size)
{
	for (size_t i = 0; i < n; i++) {
		size_t s, e;

		if (p[i] != '@')
			continue;
		s = i;
		while (s > 0 && is_local_char(p[s - 1]) && i - s < 64)
			s--;
		e = i + 1;
		while (e < n && is_domain_char(p[e]) && e - i < 253)
			e++;
		while (e > i + 1 && (p[e - 1] == '.' || p[e - 1] == '-'))
			e--;
		while (s < i && p[s] == '.')
			s++;
		if (s == i || e == i + 1 || memchr(p + i + 1, '.', e - i - 1) == NULL)
			continue;
		if (e - s >= size)
			continue;
		memcpy(out, p + s, e - s);
		out[e - s] = '\0';
		/* The bouncing system's own addresses are not the recipient. */
		if (has_ascii_prefix_ci(out, "mailer-daemon@") ||
		    has_ascii_prefix_ci(out, "postmaster@"))
			continue;
		return true;
	}
	return false;
}

/* Finds an enhanced status "4.x.y"/"5.x.y" at a word boundary. */
static bool
find_status(const char *p, size_t n, size_t *at, char *out, size_t size)
{
	for (size_t i = 0; i + 4 < n; i++) {
		size_t j = i + 1, d1, d2;

		if ((p[i] != '4' && p[i] != '5') || p[j] != '.')
			continue;
		if (i > 0 && ((p[i - 1] >= '0' && p[i - 1] <= '9') || p[i - 1] == '.'))
			continue;
		j++;
		d1 = j;
		while (j < n && j - d1 < 4 && p[j] >= '0' && p[j] <= '9')
			j++;
		if (j == d1 || j - d1 > 3 || j >= n || p[j] != '.')
			continue;
		j++;
		d2 = j;
		while (j < n && j - d2 < 4 && p[j] >= '0' && p[j] <= '9')
			j++;
		if (j == d2 || j - d2 > 3)
			continue;
		if (j < n && ((p[j] >= '0' && p[j] <= '9') ||
		    (p[j] == '.' && j + 1 < n && p[j + 1] >= '0' && p[j + 1] <= '9')))
			continue;
		if (j - i >= size)
			continue;
		memcpy(out, p + i, j - i);
		out[j - i] = '\0';
		*at = i;
		return true;
	}
	return false;
}

/* Finds a reply code "4xx"/"5xx" followed by a blank or '-'. */
static bool
find_code(const char *p, size_t n, size_t *at, unsigned *code)
{
	for (size_t i = 0; i + 3 < n; i++) {
		if ((p[i] != '4' && p[i] != '5') || p[i + 1] < '0' || p[i + 1] > '9' ||
		    p[i + 2] < '0' || p[i + 2] > '9' || (p[i + 3] != ' ' &&
		    p[i + 3] != '-'))
			continue;
		if (i > 0 && ((p[i - 1] >= '0' && p[i - 1] <= '9') ||
		    p[i - 1] == '.' || p[i - 1] == ':' || p[i - 1] == '-'))
			continue;
		*code = (unsigned)((p[i] - '0') * 100 + (p[i + 1] - '0') * 10 +
		    (p[i + 2] - '0'));
		*at = i;
		return true;
	}
	return false;
}

/* The line around offset at: [*ls, *le). */
static void
line_around(const char *p, size_t n, size_t at, size_t *ls, size_t *le)
{
	size_t s = at, e = at;

	while (s > 0 && p[s - 1] != '\n')
		s--;
	while (e < n && p[e] != '\n')
		e++;
	*ls = s;
	*le = e;
}

static int
parse_text_bounce(const char *text, size_t len, struct feedback_item *it)
{
	size_t at_status = 0, at_code = 0, at, ls, le;
	bool has_status, has_code;
	char status[16];
	unsigned code = 0;

	if (len > 256 * 1024)
		len = 256 * 1024;	/* the explanation is near the top */
	has_status = find_status(text, len, &at_status, status, sizeof(status));
	has_code = find_code(text, len, &at_code, &code);
	if (!has_status && !has_code)
		return -1;
	memset(it, 0, sizeof(*it));
	it->format = FEEDBACK_FMT_TEXT;
	if (has_status) {
		tern_strlcpy(it->status, status, sizeof(it->status));
		at = at_status;
	} else {
		snprintf(it->status, sizeof(it->status), "%u.0.0", code / 100);
		at = at_code;
	}
	if (has_code)
		it->code = code;
	it->kind = it->status[0] == '5' ? FEEDBACK_FAILED : FEEDBACK_DELAYED;
	line_around(text, len, at, &ls, &le);
	text_value("", it->diagnostic, sizeof(it->diagnostic));
	{
		size_t n = le - ls;

		while (n > 0 && (text[ls + n - 1] == '\r'))
			n--;
		if (n >= sizeof(it->diagnostic))
			n = sizeof(it->diagnostic) - 1;
		for (size_t i = 0; i < n; i++)
			it->diagnostic[i] = (unsigned char)text[ls + i] < 0x20 ?
			    ' ' : text[ls + i];
		it->diagnostic[n] = '\0';
	}
	/* The recipient: on the status line, else the lines just before it,
	 * else anywhere in the text. */
	if (!find_address(text + ls, le - ls, it->recipient, sizeof(it->recipient))) {
		size_t s = ls;

		for (int k = 0; k < 3 && s > 0; k++) {
			s--;
			while (s > 0 && text[s - 1] != '\n')
				s--;
		}
		if (!find_address(text + s, ls - s, it->recipient,
		    sizeof(it->recipient)))
			find_address(text, len, it->recipient, sizeof(it->recipient));
	}
	return 0;
}

/* ---- the walk ---- */

struct walk {
	struct feedback_item *items;
	size_t max, n;
	bool recognized;
	char *first_text;		/* the first text/plain part, decoded */
	size_t first_text_len;
};

static void walk_entity(struct walk *w, struct span e, int depth);

static void
walk_report(struct walk *w, const struct ctype *ct, struct span body, int depth)
{
	struct span parts[MIME_MAX_PARTS];
	size_t np = split_parts(body, ct->boundary, parts, MIME_MAX_PARTS);
	bool is_dsn = strcmp(ct->report_type, "delivery-status") == 0;
	bool is_arf = strcmp(ct->report_type, "feedback-report") == 0;

	for (size_t i = 0; i < np; i++) {
		struct span hdr, pbody;
		struct ctype pct;
		char *v;

		split_entity(parts[i], &hdr, &pbody);
		v = header_get(hdr, "Content-Type");
		parse_ctype(v, &pct);
		free(v);
		if ((is_dsn || !is_arf) &&
		    (strcmp(pct.type, "message/delivery-status") == 0 ||
		    strcmp(pct.type, "message/global-delivery-status") == 0)) {
			size_t len;
			char *text = decode_body(hdr, pbody, &len);

			parse_dsn_report(text, len, w->items, w->max, &w->n);
			w->recognized = true;
			free(text);
		} else if (strcmp(pct.type, "message/feedback-report") == 0) {
			size_t len;
			char *text = decode_body(hdr, pbody, &len);
			const struct span *returned = i + 1 < np ? &parts[i + 1] : NULL;
			struct span inner;

			if (returned != NULL) {
				struct span rh, rb;

				/* The returned message is the part's body. */
				split_entity(*returned, &rh, &rb);
				inner = rb;
				returned = &inner;
			}
			parse_arf_report(text, len, returned, w->items, w->max, &w->n);
			w->recognized = true;
			free(text);
		} else {
			walk_entity(w, parts[i], depth + 1);
		}
	}
}

static void
walk_entity(struct walk *w, struct span e, int depth)
{
	struct span hdr, body;
	struct ctype ct;
	char *v;

	if (depth > MIME_MAX_DEPTH || w->recognized)
		return;
	split_entity(e, &hdr, &body);
	v = header_get(hdr, "Content-Type");
	parse_ctype(v, &ct);
	free(v);
	if (strcmp(ct.type, "multipart/report") == 0 && ct.boundary[0] != '\0') {
		walk_report(w, &ct, body, depth);
		return;
	}
	if (strncmp(ct.type, "multipart/", 10) == 0 && ct.boundary[0] != '\0') {
		struct span parts[MIME_MAX_PARTS];
		size_t np = split_parts(body, ct.boundary, parts, MIME_MAX_PARTS);

		for (size_t i = 0; i < np && !w->recognized; i++)
			walk_entity(w, parts[i], depth + 1);
		return;
	}
	if (w->first_text == NULL && strcmp(ct.type, "text/plain") == 0)
		w->first_text = decode_body(hdr, body, &w->first_text_len);
}

int
feedback_parse(const char *msg, size_t len, struct feedback_item *items,
    size_t max, size_t *n)
{
	struct walk w;
	struct span e = { msg, len > FEEDBACK_MAX_INPUT ? FEEDBACK_MAX_INPUT : len };

	memset(&w, 0, sizeof(w));
	w.items = items;
	w.max = max;
	walk_entity(&w, e, 0);
	if (!w.recognized && w.first_text != NULL && max > 0 &&
	    parse_text_bounce(w.first_text, w.first_text_len, &items[0]) == 0) {
		w.n = 1;
		w.recognized = true;
	}
	free(w.first_text);
	*n = w.n;
	return w.recognized ? 0 : -1;
}
