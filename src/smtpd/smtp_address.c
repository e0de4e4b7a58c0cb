/*
 * smtp_address.c - RFC 5321 path and mailbox parsing for tern-smtpd.
 * Everything here reads untrusted bytes: lengths are checked before every
 * copy and nothing outside the grammar is accepted.
 * Runs in tern-smtpd (unprivileged) and in the fuzz and unit tests.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <string.h>

#include "smtp_address.h"
#include "util.h"

bool
has_non_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

bool
is_valid_utf8(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
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
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += n + 1;
	}
	return true;
}

static bool
is_atext(unsigned char c, bool utf8)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	if (c >= 0x80)
		return utf8;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool
is_letdig(unsigned char c, bool utf8)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (utf8 && c >= 0x80);
}

/* Length of a local part at s[0..len) or -1 when it is not one. */
static long
local_part_len(const char *s, size_t len, bool utf8, const char **why)
{
	size_t i = 0;

	if (len > 0 && s[0] == '"') {
		for (i = 1; i < len; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '"')
				break;
			if (c == '\\') {
				if (i + 1 >= len || (unsigned char)s[i + 1] < 32 ||
				    (unsigned char)s[i + 1] > 126) {
					*why = "bad quoted pair in local part";
					return -1;
				}
				i++;
				continue;
			}
			if (!((c >= 32 && c <= 126) || (utf8 && c >= 0x80))) {
				*why = "bad character in quoted local part";
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

		for (i = 0; i < len && s[i] != '@'; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '.') {
				if (!dot_ok) {
					*why = "misplaced dot in local part";
					return -1;
				}
				dot_ok = false;
			} else if (is_atext(c, utf8)) {
				dot_ok = true;
			} else {
				*why = c >= 0x80 ? "non-ASCII local part without SMTPUTF8"
				    : "bad character in local part";
				return -1;
			}
		}
		if (i == 0 || !dot_ok) {
			*why = i == 0 ? "empty local part" : "misplaced dot in local part";
			return -1;
		}
	}
	if (i > SMTP_LOCAL_MAX) {
		*why = "local part longer than 64 bytes";
		return -1;
	}
	return (long)i;
}

/* Checks a domain or address literal occupying all of s[0..len). */
static int
domain_check(const char *s, size_t len, bool utf8, const char **why)
{
	size_t label = 0;

	if (len == 0) {
		*why = "empty domain";
		return -1;
	}
	if (len > SMTP_DOMAIN_MAX) {
		*why = "domain longer than 255 bytes";
		return -1;
	}
	if (s[0] == '[') {
		char lit[64];
		unsigned char bin[16];

		if (s[len - 1] != ']' || len - 2 >= sizeof(lit)) {
			*why = "bad address literal";
			return -1;
		}
		memcpy(lit, s + 1, len - 2);
		lit[len - 2] = '\0';
		if (has_ascii_prefix_ci(lit, "IPv6:") &&
		    inet_pton(AF_INET6, lit + 5, bin) == 1)
			return 0;
		if (inet_pton(AF_INET, lit, bin) == 1)
			return 0;
		*why = "bad address literal";
		return -1;
	}
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)s[i] : '.';

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-') {
				*why = "bad domain label";
				return -1;
			}
			label = 0;
		} else if (is_letdig(c, utf8) || (c == '-' && label > 0)) {
			if (++label > 63) {
				*why = "domain label longer than 63 bytes";
				return -1;
			}
		} else {
			*why = c >= 0x80 ? "non-ASCII domain without SMTPUTF8"
			    : "bad character in domain";
			return -1;
		}
	}
	if (utf8 && !is_valid_utf8((const unsigned char *)s, len)) {
		*why = "domain is not valid UTF-8";
		return -1;
	}
	return 0;
}

int
smtp_mailbox_parse(const char *s, size_t len, unsigned flags, char *out,
    size_t outsize, const char **why)
{
	bool utf8 = flags & SMTP_PATH_UTF8;
	long lp;
	size_t dlen;

	if (memchr(s, '\0', len) != NULL) {
		*why = "NUL in address";
		return -1;
	}
	lp = local_part_len(s, len, utf8, why);
	if (lp < 0)
		return -1;
	if (utf8 && !is_valid_utf8((const unsigned char *)s, (size_t)lp)) {
		*why = "local part is not valid UTF-8";
		return -1;
	}
	if ((size_t)lp == len) {
		if ((flags & SMTP_PATH_POSTMASTER_OK) && lp == 10 &&
		    has_ascii_prefix_ci(s, "postmaster")) {
			if (outsize < 11) {
				*why = "address too long";
				return -1;
			}
			memcpy(out, "postmaster", 11);
			return 0;
		}
		*why = "address has no domain";
		return -1;
	}
	if (s[lp] != '@') {
		*why = "junk after local part";
		return -1;
	}
	dlen = len - (size_t)lp - 1;
	if (domain_check(s + lp + 1, dlen, utf8, why) == -1)
		return -1;
	if (len + 1 > outsize) {
		*why = "address too long";
		return -1;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	/* Domains compare case-insensitively: keep them lower case. */
	for (size_t i = (size_t)lp + 1; i < len; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] - 'A' + 'a');
	return 0;
}

int
smtp_path_parse(const char *s, unsigned flags, char *out, size_t outsize,
    const char **end, const char **why)
{
	const char *p = s, *close;
	bool quoted = false;

	if (*p != '<') {
		*why = "address must be in angle brackets";
		return -1;
	}
	p++;
	if (*p == '>') {
		if (!(flags & SMTP_PATH_NULL_OK)) {
			*why = "null address not allowed here";
			return -1;
		}
		out[0] = '\0';
		*end = p + 1;
		return 0;
	}
	/* A source route (@a,@b:) is obsolete: check its shape and drop it. */
	if (*p == '@') {
		const char *colon = strchr(p, ':');
		const char *gt = strchr(p, '>');

		if (colon == NULL || (gt != NULL && gt < colon)) {
			*why = "bad source route";
			return -1;
		}
		while (p < colon) {
			const char *q = p + 1;

			while (q < colon && *q != ',')
				q++;
			if (*p != '@' ||
			    domain_check(p + 1, (size_t)(q - p - 1), false, why) == -1) {
				*why = "bad source route";
				return -1;
			}
			p = q < colon ? q + 1 : q;
		}
		p = colon + 1;
	}
	/* The closing '>' is the first one outside a quoted string. */
	for (close = p; *close != '\0'; close++) {
		if (quoted && *close == '\\' && close[1] != '\0') {
			close++;
			continue;
		}
		if (*close == '"')
			quoted = !quoted;
		else if (*close == '>' && !quoted)
			break;
	}
	if (*close != '>') {
		*why = "missing '>'";
		return -1;
	}
	if (smtp_mailbox_parse(p, (size_t)(close - p), flags, out, outsize,
	    why) == -1)
		return -1;
	*end = close + 1;
	return 0;
}

const char *
smtp_address_domain(const char *mailbox)
{
	const char *at = strrchr(mailbox, '@');

	return at == NULL ? NULL : at + 1;
}

bool
is_smtp_relay_trick(const char *mailbox)
{
	const char *at = strrchr(mailbox, '@');
	size_t lp = at == NULL ? strlen(mailbox) : (size_t)(at - mailbox);

	for (size_t i = 0; i < lp; i++)
		if (mailbox[i] == '%' || mailbox[i] == '!' || mailbox[i] == '@')
			return true;
	return false;
}
