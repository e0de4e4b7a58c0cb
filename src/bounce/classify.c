/*
 * classify.c - bounce classification by rule table (see classify.h).
 * A rule is one line: STATUS-PATTERN CLASS [REGEX], where the optional
 * POSIX extended regular expression (case-insensitive) must match the
 * reply text. The first rule that matches gives the class.
 */
#include "autoconfig.h"

#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "config.h"
#include "util.h"

const char *const bounce_class_names[] = {
	"bad-mailbox", "bad-domain", "mailbox-full", "policy", "rate-limited",
	"dns", "tls", "content", "other", NULL,
};

/*
 * The built-in rules, after the operator's. Unambiguous statuses first,
 * then the words servers use, then the broad status classes.
 */
static const char builtin_rules[] =
	"*.1.1   bad-mailbox\n"
	"*.1.0   bad-mailbox\n"
	"*.1.6   bad-mailbox\n"
	"*.2.1   bad-mailbox\n"
	"*.1.2   bad-domain\n"
	"*.1.10  bad-domain\n"
	"*.2.2   mailbox-full\n"
	"*.3.4   content\n"
	"*.6.*   content\n"
	"*.7.10  tls\n"
	"*.7.11  tls\n"
	"*.7.5   tls\n"
	"*.4.3   dns\n"
	"*.7.28  rate-limited\n"
	"*.*.*   rate-limited  rate.?limit|too many (messages|connections|recipients)|throttl|try again later|slow down\n"
	"*.*.*   tls           tls|starttls|certificate|handshake\n"
	"*.*.*   dns           dns|name server|name service|host not found|no mx|nxdomain|servfail\n"
	"*.*.*   mailbox-full  (mailbox|quota|storage).{0,30}(full|exceeded|over)|over quota|insufficient (storage|space)\n"
	"*.*.*   bad-mailbox   (user|mailbox|recipient|address|account).{0,30}(unknown|not found|does not exist|doesn'?t exist|invalid|disabled|unavailable)|no such (user|mailbox|recipient)|unknown (user|recipient)\n"
	"*.*.*   bad-domain    (domain|host).{0,20}(not found|does not exist|unknown)\n"
	"*.*.*   content       virus|malware|attachment|message (too big|too large|size)|content\n"
	"*.*.*   policy        spam|block|blacklist|blocklist|denied|reputation|policy|dmarc|spf|dkim|not authori[sz]ed|relay\n"
	"*.4.4   bad-domain\n"
	"*.4.*   dns\n"
	"*.7.*   policy\n"
	"*.5.*   content\n"
	"*.*.*   other\n";

struct bounce_rule {
	char *pattern;
	const char *class;		/* one of bounce_class_names */
	bool has_regex;
	regex_t re;
};

struct bounce_classifier {
	struct bounce_rule *rules;
	size_t n;
};

bool
is_bounce_class(const char *name)
{
	for (size_t i = 0; bounce_class_names[i] != NULL; i++)
		if (strcmp(bounce_class_names[i], name) == 0)
			return true;
	return false;
}

/* One part of a status: digits (1 to 3) or "*". */
static bool
is_status_part(const char *s, size_t n, bool star_ok)
{
	if (n == 1 && s[0] == '*')
		return star_ok;
	if (n == 0 || n > 3)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool
split_status(const char *s, bool star_ok, const char *part[3], size_t len[3])
{
	const char *p = s;

	for (int i = 0; i < 3; i++) {
		size_t n = strcspn(p, ".");

		part[i] = p;
		len[i] = n;
		if (!is_status_part(p, n, star_ok))
			return false;
		p += n;
		if (i < 2) {
			if (*p != '.')
				return false;
			p++;
		}
	}
	return *p == '\0';
}

bool
is_status_pattern(const char *pattern)
{
	const char *part[3];
	size_t len[3];

	return split_status(pattern, true, part, len);
}

bool
is_status_match(const char *pattern, const char *status)
{
	const char *pp[3], *sp[3];
	size_t pl[3], sl[3];

	if (!split_status(pattern, true, pp, pl) ||
	    !split_status(status, false, sp, sl))
		return false;
	for (int i = 0; i < 3; i++) {
		if (pl[i] == 1 && pp[i][0] == '*')
			continue;
		/* Numeric compare: "010" and "10" are the same detail. */
		if (strtoul(pp[i], NULL, 10) != strtoul(sp[i], NULL, 10))
			return false;
	}
	return true;
}

static void
add_error(struct config_errors *errs, const char *file, int line,
    const char *msg)
{
	errs->v = xreallocarray(errs->v, errs->n + 1, sizeof(*errs->v));
	errs->v[errs->n].file = xstrdup(file);
	errs->v[errs->n].line = line;
	errs->v[errs->n].message = xstrdup(msg);
	errs->n++;
}

static void
classifier_add_text(struct bounce_classifier *c, const char *text,
    const char *name, struct config_errors *errs)
{
	const char *p = text;
	int lineno = 0;

	while (*p != '\0') {
		size_t n = strcspn(p, "\n");
		char *line = xstrndup(p, n), *s = line, *pat, *cls, *rx;
		struct bounce_rule r;

		lineno++;
		p += n;
		if (*p == '\n')
			p++;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#') {
			free(line);
			continue;
		}
		pat = s;
		s += strcspn(s, " \t");
		if (*s != '\0')
			*s++ = '\0';
		s += strspn(s, " \t");
		cls = s;
		s += strcspn(s, " \t");
		if (*s != '\0')
			*s++ = '\0';
		s += strspn(s, " \t");
		rx = s;
		for (char *e = rx + strlen(rx); e > rx && (e[-1] == ' ' ||
		    e[-1] == '\t' || e[-1] == '\r'); e--)
			e[-1] = '\0';
		memset(&r, 0, sizeof(r));
		if (!is_status_pattern(pat)) {
			char *m = xasprintf("'%s' is not a status pattern "
			    "(like 5.1.1, 5.7.* or *.*.*)", pat);
			add_error(errs, name, lineno, m);
			free(m);
			free(line);
			continue;
		}
		for (size_t i = 0; bounce_class_names[i] != NULL; i++)
			if (strcmp(bounce_class_names[i], cls) == 0)
				r.class = bounce_class_names[i];
		if (r.class == NULL) {
			char *m = xasprintf("unknown class '%s'; classes are "
			    "bad-mailbox, bad-domain, mailbox-full, policy, "
			    "rate-limited, dns, tls, content, other", cls);
			add_error(errs, name, lineno, m);
			free(m);
			free(line);
			continue;
		}
		if (*rx != '\0') {
			int rc = regcomp(&r.re, rx, REG_EXTENDED | REG_ICASE | REG_NOSUB);

			if (rc != 0) {
				char buf[128], *m;

				regerror(rc, &r.re, buf, sizeof(buf));
				m = xasprintf("bad regular expression: %s", buf);
				add_error(errs, name, lineno, m);
				free(m);
				free(line);
				continue;
			}
			r.has_regex = true;
		}
		r.pattern = xstrdup(pat);
		c->rules = xreallocarray(c->rules, c->n + 1, sizeof(*c->rules));
		c->rules[c->n++] = r;
		free(line);
	}
}

struct bounce_classifier *
bounce_classifier_parse(const char *text, const char *name,
    struct config_errors *errs)
{
	struct bounce_classifier *c = xcalloc(1, sizeof(*c));

	memset(errs, 0, sizeof(*errs));
	classifier_add_text(c, text, name, errs);
	classifier_add_text(c, builtin_rules, "(built-in rules)", errs);
	if (errs->n > 0) {
		bounce_classifier_free(c);
		return NULL;
	}
	return c;
}

struct bounce_classifier *
bounce_classifier_load(const char *path, struct config_errors *errs)
{
	struct bounce_classifier *c;
	char *text = NULL;
	size_t len = 0, cap = 0;
	FILE *fp;
	char buf[4096];
	size_t r;

	memset(errs, 0, sizeof(*errs));
	if (path == NULL)
		return bounce_classifier_parse("", "(none)", errs);
	fp = fopen(path, "r");
	if (fp == NULL) {
		char *m = xasprintf("cannot open: %s", strerror(errno));

		add_error(errs, path, 0, m);
		free(m);
		return NULL;
	}
	while ((r = fread(buf, 1, sizeof(buf), fp)) > 0) {
		if (len + r + 1 > cap) {
			cap = (len + r + 1) * 2;
			text = xrealloc(text, cap);
		}
		memcpy(text + len, buf, r);
		len += r;
	}
	fclose(fp);
	text = xrealloc(text, len + 1);
	text[len] = '\0';
	if (strlen(text) != len) {
		free(text);
		add_error(errs, path, 0, "the file contains a NUL byte");
		return NULL;
	}
	c = bounce_classifier_parse(text, path, errs);
	free(text);
	return c;
}

void
bounce_classifier_free(struct bounce_classifier *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->rules[i].pattern);
		if (c->rules[i].has_regex)
			regfree(&c->rules[i].re);
	}
	free(c->rules);
	free(c);
}

const char *
bounce_classify(const struct bounce_classifier *c, unsigned code,
    const char *status, const char *text)
{
	char st[16];

	if (status != NULL && is_status_pattern(status) &&
	    strchr(status, '*') == NULL)
		tern_strlcpy(st, status, sizeof(st));
	else if (code >= 400 && code < 600)
		snprintf(st, sizeof(st), "%u.0.0", code / 100);
	else
		tern_strlcpy(st, "4.0.0", sizeof(st));
	for (size_t i = 0; i < c->n; i++) {
		const struct bounce_rule *r = &c->rules[i];

		if (!is_status_match(r->pattern, st))
			continue;
		if (r->has_regex && (text == NULL ||
		    regexec(&r->re, text, 0, NULL, 0) != 0))
			continue;
		return r->class;
	}
	return "other";
}
