/*
 * header_from.c - the From: domain check of tern-smtpd (header_from.h).
 * It understands enough of RFC 5322 to find addresses: folding, comments,
 * quoted strings, display names with angle brackets, groups, lists.
 * Runs in tern-smtpd (unprivileged) and in the unit tests.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "header_from.h"
#include "smtp_address.h"
#include "util.h"

/* Checks one address "local@domain" (already free of comments); an
 * empty one is a blank list element where empty_ok, else refused. */
static int
check_address(const char *a, size_t n, bool empty_ok, domain_pred is_ours,
    void *arg, char *bad, size_t badsize)
{
	char addr[512], mbox[SMTP_ADDRESS_MAX + 1];
	const char *domain, *why;

	while (n > 0 && (*a == ' ' || *a == '\t')) {
		a++;
		n--;
	}
	while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t'))
		n--;
	if (n == 0 && empty_ok)
		return 0;	/* an empty list element */
	if (n == 0) {
		/* "<@route: >": nothing a reader could show. */
		snprintf(bad, badsize, "empty From: address");
		return -1;
	}
	if (n >= sizeof(addr)) {
		snprintf(bad, badsize, "address too long");
		return -1;
	}
	memcpy(addr, a, n);
	addr[n] = '\0';
	/*
	 * The whole of it must be one mailbox: a domain picked out of
	 * "evil@other.test ours@example.test" or "evil@other.test@example.test"
	 * is not the address a mail reader shows.
	 */
	if (smtp_mailbox_parse(addr, n, SMTP_PATH_UTF8, mbox, sizeof(mbox),
	    &why) == -1 || (domain = smtp_address_domain(mbox)) == NULL ||
	    !is_ours(domain, arg)) {
		/* It goes into a reply and a log line: printable only. */
		for (char *p = addr; *p != '\0'; p++)
			if ((unsigned char)*p < 32 || (unsigned char)*p >= 127)
				*p = '?';
		snprintf(bad, badsize, "%s", addr);
		return -1;
	}
	return 0;
}

/*
 * Checks one unfolded From: value. Comments are dropped and quoted
 * strings kept whole; "<...>" is the address when present, else the
 * text between commas is.
 */
static int
check_value(const char *v, size_t n, domain_pred is_ours, void *arg,
    char *bad, size_t badsize, unsigned *found)
{
	char clean[HEADER_SCAN_MAX];
	size_t c = 0, i = 0;
	int depth = 0;
	bool quoted = false;

	/* Pass 1: drop comments, keep quoted text (marked by '"'). */
	for (i = 0; i < n && c < sizeof(clean) - 1; i++) {
		char ch = v[i];

		if (ch == '\\' && i + 1 < n && (quoted || depth > 0)) {
			if (depth == 0) {
				clean[c++] = 'x';	/* an escaped char in quotes */
			}
			i++;
			continue;
		}
		if (depth > 0) {
			if (ch == '(')
				depth++;
			else if (ch == ')')
				depth--;
			continue;
		}
		if (ch == '"') {
			quoted = !quoted;
			clean[c++] = ch;
			continue;
		}
		if (!quoted && ch == '(') {
			depth = 1;
			continue;
		}
		/* Quoted text is a display name: it cannot hold separators. */
		clean[c++] = quoted && (ch == ',' || ch == '<' || ch == '>' ||
		    ch == ':' || ch == ';') ? 'x' : ch;
	}
	clean[c] = '\0';
	if (quoted || depth > 0) {
		snprintf(bad, badsize, "unbalanced From: header");
		return -1;
	}
	/* Pass 2: split into mailboxes. */
	for (char *p = clean; *p != '\0';) {
		char *end = p, *lt, *gt;

		while (*end != '\0' && *end != ',' && *end != ';')
			end++;
		/* "group: a@b, c@d;" - the group name is not an address. */
		lt = memchr(p, ':', (size_t)(end - p));
		if (lt != NULL && memchr(p, '<', (size_t)(end - p)) == NULL &&
		    memchr(p, '@', (size_t)(lt - p)) == NULL)
			p = lt + 1;
		lt = memchr(p, '<', (size_t)(end - p));
		if (lt != NULL) {
			gt = memchr(lt, '>', (size_t)(end - lt));
			if (gt == NULL) {
				snprintf(bad, badsize, "bad From: address");
				return -1;
			}
			/* "<@route:a@b>": the route goes. */
			if (lt[1] == '@' && memchr(lt, ':', (size_t)(gt - lt)) != NULL)
				lt = memchr(lt, ':', (size_t)(gt - lt));
			(*found)++;
			/* "<>" and "<@route: >" are empty: refused there. */
			if (check_address(lt + 1, (size_t)(gt - lt - 1), false,
			    is_ours, arg, bad, badsize) == -1)
				return -1;
			/* "<ours@example.test> <evil@other.test>": readers that
			 * take the last angle address would show the second. */
			for (const char *q = gt + 1; q < end; q++)
				if (*q != ' ' && *q != '\t') {
					snprintf(bad, badsize, "bad From: address");
					return -1;
				}
		} else {
			char *q = p;

			while (q < end && (*q == ' ' || *q == '\t'))
				q++;
			if (q < end)
				(*found)++;
			if (check_address(p, (size_t)(end - p), true, is_ours,
			    arg, bad, badsize) == -1)
				return -1;
		}
		p = *end != '\0' ? end + 1 : end;
	}
	return 0;
}

int
header_check_from(const char *hdr, size_t len, domain_pred is_ours,
    void *arg, char *bad, size_t badsize)
{
	unsigned found = 0;
	size_t i = 0;

	while (i < len) {
		size_t start = i, end;
		char value[HEADER_SCAN_MAX];
		size_t vn = 0;

		/* A field: its line and every continuation line. */
		end = i;
		for (;;) {
			while (end < len && hdr[end] != '\n')
				end++;
			if (end + 1 < len && (hdr[end + 1] == ' ' || hdr[end + 1] == '\t')) {
				end++;
				continue;
			}
			break;
		}
		size_t colon = start + 4;

		i = end < len ? end + 1 : len;
		if (end - start < 5 || !has_ascii_prefix_ci(hdr + start, "from"))
			continue;
		/* RFC 5322 obsolete syntax: "From :" is a From: field too. */
		while (colon < end && (hdr[colon] == ' ' || hdr[colon] == '\t'))
			colon++;
		if (colon >= end || hdr[colon] != ':')
			continue;
		if (memchr(hdr + start, '\0', end - start) != NULL) {
			snprintf(bad, badsize, "NUL in From: header");
			return -1;
		}
		for (size_t k = colon + 1; k < end && vn < sizeof(value) - 1; k++)
			if (hdr[k] != '\r' && hdr[k] != '\n')
				value[vn++] = hdr[k];
		value[vn] = '\0';
		if (check_value(value, vn, is_ours, arg, bad, badsize, &found) == -1)
			return -1;
	}
	/* No From: at all is left to cleanup, which adds one from the
	 * (already checked) envelope sender. */
	(void)found;
	return 0;
}
