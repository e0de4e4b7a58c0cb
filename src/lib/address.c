/*
 * address.c - RFC 5321 path and mailbox parsing with SMTPUTF8 (RFC 6531)
 * and the RFC 5321 length limits. Pure code, no allocation; linked into
 * tern-smtpd and tern-cleanup.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "address.h"
#include "util.h"

static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5322 atext (ASCII part). */
static bool
is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

bool
is_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned long cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates, beyond U+10FFFF. */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += n + 1;
	}
	return true;
}

/* An address literal "[...]" (RFC 5321 section 4.1.3). */
static bool
is_address_literal(const char *s, size_t len)
{
	char buf[ADDRESS_DOMAIN_MAX + 1];
	unsigned char addr[16];
	size_t i, n;

	if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof(buf))
		return false;
	n = len - 2;
	memcpy(buf, s + 1, n);
	buf[n] = '\0';
	if (is_digit((unsigned char)buf[0]) && inet_pton(AF_INET, buf, addr) == 1)
		return true;
	if (has_ascii_prefix_ci(buf, "IPv6:"))
		return inet_pton(AF_INET6, buf + 5, addr) == 1;
	/* General-address-literal: Standardized-tag ":" 1*dcontent. */
	for (i = 0; i < n && buf[i] != ':'; i++)
		if (!is_alpha((unsigned char)buf[i]) &&
		    !is_digit((unsigned char)buf[i]) && buf[i] != '-')
			return false;
	if (i == 0 || i == n || buf[i - 1] == '-' || i + 1 == n)
		return false;
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < 33 || c > 126 || (c >= 91 && c <= 93))
			return false;
	}
	return true;
}

bool
is_address_domain(const char *s, size_t len, unsigned flags)
{
	size_t label = 0, i;
	bool utf8 = false;

	if (len == 0 || len > ADDRESS_DOMAIN_MAX)
		return false;
	if (s[0] == '[')
		return is_address_literal(s, len);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c >= 0x80) {
			if (!(flags & ADDRESS_UTF8))
				return false;
			utf8 = true;
		} else if (c == '-') {
			if (label == 0)
				return false;
		} else if (!is_alpha(c) && !is_digit(c)) {
			return false;
		}
		if (++label > ADDRESS_LABEL_MAX)
			return false;
	}
	if (label == 0 || s[len - 1] == '-')
		return false;
	return !utf8 || is_utf8_valid(s, len);
}

/*
 * Parses the local part at s[*pos..len): a dot-string or a quoted string.
 * Leaves *pos after it.
 */
static int
parse_local(const char *s, size_t len, size_t *pos, unsigned flags,
    struct address *out, const char **why)
{
	size_t i = *pos, start = *pos;

	if (i < len && s[i] == '"') {
		out->is_quoted = true;
		for (i++; i < len && s[i] != '"'; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '\\') {
				if (i + 1 >= len || (unsigned char)s[i + 1] < 32 ||
				    (unsigned char)s[i + 1] > 126) {
					*why = "bad quoted pair in local part";
					return -1;
				}
				i++;
			} else if (c >= 0x80) {
				if (!(flags & ADDRESS_UTF8)) {
					*why = "non-ASCII local part without SMTPUTF8";
					return -1;
				}
				out->has_utf8 = true;
			} else if (c < 32 || c > 126) {
				*why = "control character in local part";
				return -1;
			}
		}
		if (i >= len) {
			*why = "unterminated quoted local part";
			return -1;
		}
		i++;
	} else {
		bool dot_ok = false;

		for (; i < len; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '.') {
				if (!dot_ok) {
					*why = "misplaced dot in local part";
					return -1;
				}
				dot_ok = false;
			} else if (c >= 0x80) {
				if (!(flags & ADDRESS_UTF8)) {
					*why = "non-ASCII local part without SMTPUTF8";
					return -1;
				}
				out->has_utf8 = true;
				dot_ok = true;
			} else if (is_atext(c)) {
				dot_ok = true;
			} else {
				break;
			}
		}
		if (i == start) {
			*why = "empty local part";
			return -1;
		}
		if (!dot_ok) {
			*why = "misplaced dot in local part";
			return -1;
		}
	}
	if (i - start > ADDRESS_LOCAL_MAX) {
		*why = "local part longer than 64 octets";
		return -1;
	}
	if (out->has_utf8 && !is_utf8_valid(s + start, i - start)) {
		*why = "invalid UTF-8 in local part";
		return -1;
	}
	memcpy(out->local, s + start, i - start);
	out->local[i - start] = '\0';
	*pos = i;
	return 0;
}

int
address_parse_mailbox(const char *s, size_t len, unsigned flags,
    struct address *out, const char **why)
{
	size_t pos = 0, dlen;

	memset(out, 0, sizeof(*out));
	if (len == 0 && (flags & ADDRESS_ALLOW_NULL)) {
		out->is_null = true;
		return 0;
	}
	if (len > ADDRESS_MAILBOX_MAX) {
		*why = "address longer than 254 octets";
		return -1;
	}
	if (parse_local(s, len, &pos, flags, out, why) == -1)
		return -1;
	if (pos >= len || s[pos] != '@') {
		*why = pos >= len ? "no domain" : "bad character in local part";
		return -1;
	}
	pos++;
	dlen = len - pos;
	if (!is_address_domain(s + pos, dlen, flags)) {
		*why = "invalid domain";
		return -1;
	}
	memcpy(out->domain, s + pos, dlen);
	out->domain[dlen] = '\0';
	out->is_literal = s[pos] == '[';
	for (size_t i = 0; i < dlen && !out->has_utf8; i++)
		if ((unsigned char)s[pos + i] >= 0x80)
			out->has_utf8 = true;
	return 0;
}

int
address_parse_path(const char *s, size_t len, unsigned flags,
    struct address *out, size_t *end, const char **why)
{
	size_t i = 1, start, close;

	memset(out, 0, sizeof(*out));
	if (len == 0 || s[0] != '<') {
		*why = "path must start with '<'";
		return -1;
	}
	if (len >= 2 && s[1] == '>') {
		if (!(flags & ADDRESS_ALLOW_NULL)) {
			*why = "null path not allowed here";
			return -1;
		}
		out->is_null = true;
		*end = 2;
		return 0;
	}
	/* A source route "@a,@b:" is accepted and ignored. */
	if (i < len && s[i] == '@') {
		size_t route = i;

		while (i < len && s[i] != ':' && s[i] != '>')
			i++;
		if (i >= len || s[i] != ':') {
			*why = "bad source route";
			return -1;
		}
		for (size_t k = route; k < i;) {
			size_t e = k + 1;

			if (s[k] != '@') {
				*why = "bad source route";
				return -1;
			}
			while (e < i && s[e] != ',')
				e++;
			if (!is_address_domain(s + k + 1, e - k - 1, flags)) {
				*why = "bad source route";
				return -1;
			}
			k = e < i ? e + 1 : e;
		}
		i++;
	}
	start = i;
	{
		struct address tmp;
		size_t pos = start;

		memset(&tmp, 0, sizeof(tmp));
		if (parse_local(s, len, &pos, flags, &tmp, why) == -1)
			return -1;
		if (pos >= len || s[pos] != '@') {
			*why = "no domain";
			return -1;
		}
		pos++;
		if (pos < len && s[pos] == '[') {
			while (pos < len && s[pos] != ']')
				pos++;
			if (pos < len)
				pos++;
		} else {
			while (pos < len && s[pos] != '>')
				pos++;
		}
		if (pos >= len || s[pos] != '>') {
			*why = "path must end with '>'";
			return -1;
		}
		close = pos;
	}
	if (close + 1 > ADDRESS_PATH_MAX && close - start > ADDRESS_MAILBOX_MAX) {
		*why = "path longer than 256 octets";
		return -1;
	}
	if (address_parse_mailbox(s + start, close - start, flags & ~ADDRESS_ALLOW_NULL,
	    out, why) == -1)
		return -1;
	*end = close + 1;
	return 0;
}

size_t
address_format(const struct address *a, char *buf, size_t size)
{
	int n;

	if (a->is_null) {
		if (size > 0)
			buf[0] = '\0';
		return 0;
	}
	n = snprintf(buf, size, "%s@%s", a->local, a->domain);
	return n < 0 ? 0 : (size_t)n;
}
