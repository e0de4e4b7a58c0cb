/*
 * smtp_address.c - what tern-smtpd needs of an envelope address on top
 * of the shared RFC 5321 parser (src/lib/address.c): "<postmaster>"
 * without a domain at RCPT, the mailbox as one string with its domain in
 * lower case, and the relay tricks it refuses. Everything here reads
 * untrusted bytes; runs in tern-smtpd (unprivileged) and the fuzz and
 * unit tests.
 */
#include "autoconfig.h"

#include <string.h>

#include "address.h"
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

static unsigned
address_flags(unsigned flags)
{
	return (flags & SMTP_PATH_UTF8 ? ADDRESS_UTF8 : 0) |
	    (flags & SMTP_PATH_NULL_OK ? ADDRESS_ALLOW_NULL : 0);
}

/* local@domain into out, the domain lower-cased: domains compare
 * case-insensitively, local parts do not. */
static int
mailbox_string(const struct address *a, char *out, size_t outsize,
    const char **why)
{
	if (address_format(a, out, outsize) >= outsize) {
		*why = "address too long";
		return -1;
	}
	if (!a->is_null)
		ascii_lowercase(out + strlen(a->local) + 1);
	return 0;
}

static int
postmaster(char *out, size_t outsize, const char **why)
{
	if (outsize < sizeof("postmaster")) {
		*why = "address too long";
		return -1;
	}
	memcpy(out, "postmaster", sizeof("postmaster"));
	return 0;
}

int
smtp_mailbox_parse(const char *s, size_t len, unsigned flags, char *out,
    size_t outsize, const char **why)
{
	struct address a;

	if (memchr(s, '\0', len) != NULL) {
		*why = "NUL in address";
		return -1;
	}
	if ((flags & SMTP_PATH_POSTMASTER_OK) && len == 10 &&
	    has_ascii_prefix_ci(s, "postmaster"))
		return postmaster(out, outsize, why);
	if (address_parse_mailbox(s, len, address_flags(flags) &
	    ~ADDRESS_ALLOW_NULL, &a, why) == -1)
		return -1;
	return mailbox_string(&a, out, outsize, why);
}

int
smtp_path_parse(const char *s, unsigned flags, char *out, size_t outsize,
    const char **end, const char **why)
{
	struct address a;
	size_t n;

	if (*s != '<') {
		*why = "address must be in angle brackets";
		return -1;
	}
	if ((flags & SMTP_PATH_POSTMASTER_OK) &&
	    has_ascii_prefix_ci(s, "<postmaster>")) {
		*end = s + 12;
		return postmaster(out, outsize, why);
	}
	if (address_parse_path(s, strlen(s), address_flags(flags), &a, &n,
	    why) == -1 || mailbox_string(&a, out, outsize, why) == -1)
		return -1;
	*end = s + n;
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
