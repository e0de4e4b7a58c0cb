/*
 * smtp_parse.c - SMTP command line parsing for tern-smtpd. Every check
 * that can refuse untrusted input sits here, so that one fuzz target and
 * one table of unit tests cover it.
 * Runs in tern-smtpd (unprivileged) and in the fuzz and unit tests.
 */
#include "autoconfig.h"

#include <string.h>

#include "ipc.h"
#include "smtp_parse.h"
#include "util.h"

int
smtp_split_command(char *line, char **verb, char **args)
{
	char *p = line;

	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
		p++;
	if (p == line || (*p != '\0' && *p != ' '))
		return -1;
	*verb = line;
	if (*p == ' ') {
		*p++ = '\0';
		while (*p == ' ')
			p++;
	}
	*args = p;
	return 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
xtext_decode(const char *s, size_t len, char *out, size_t outsize)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			int hi, lo;

			if (i + 2 >= len)
				return -1;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return -1;
		}
		/* Decoded control characters would split a header line. */
		if (c < 32 || c == 127)
			return -1;
		if (o + 1 >= outsize)
			return -1;
		out[o++] = (char)c;
	}
	if (outsize == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

/* Walks "KEY[=VALUE] KEY[=VALUE]..."; returns the next parameter. */
static bool
next_param(const char **p, const char **key, size_t *klen, const char **val,
    size_t *vlen)
{
	const char *s = *p, *e;

	while (*s == ' ')
		s++;
	if (*s == '\0')
		return false;
	for (e = s; *e != '\0' && *e != ' '; e++)
		;
	*key = s;
	*val = memchr(s, '=', (size_t)(e - s));
	if (*val != NULL) {
		*klen = (size_t)(*val - s);
		(*val)++;
		*vlen = (size_t)(e - *val);
	} else {
		*klen = (size_t)(e - s);
		*vlen = 0;
	}
	*p = e;
	return true;
}

static bool
key_is(const char *key, size_t klen, const char *name)
{
	return strlen(name) == klen && has_ascii_prefix_ci(key, name);
}

static bool
val_is(const char *val, size_t vlen, const char *name)
{
	return val != NULL && strlen(name) == vlen && has_ascii_prefix_ci(val, name);
}

/* "FROM:" / "TO:" with optional spaces before the path (as Postfix allows). */
static const char *
skip_prefix(const char *args, const char *prefix)
{
	if (!has_ascii_prefix_ci(args, prefix))
		return NULL;
	args += strlen(prefix);
	while (*args == ' ')
		args++;
	return args;
}

int
smtp_parse_mail(const char *args, struct smtp_mail *out, const char **reply)
{
	const char *p, *key, *val, *why;
	size_t klen, vlen;
	unsigned seen = 0;

	memset(out, 0, sizeof(*out));
	if ((p = skip_prefix(args, "FROM:")) == NULL) {
		*reply = "501 5.5.4 Syntax: MAIL FROM:<address>";
		return -1;
	}
	/* UTF-8 is checked against SMTPUTF8 once the parameters are known. */
	if (smtp_path_parse(p, SMTP_PATH_NULL_OK | SMTP_PATH_UTF8, out->sender,
	    sizeof(out->sender), &p, &why) == -1) {
		*reply = "553 5.1.7 Bad sender address syntax";
		return -1;
	}
	if (*p != '\0' && *p != ' ') {
		*reply = "501 5.5.4 Junk after the sender address";
		return -1;
	}
	while (next_param(&p, &key, &klen, &val, &vlen)) {
		unsigned bit;

		if (key_is(key, klen, "SIZE")) {
			char num[21];

			bit = 1;
			if (val == NULL || vlen == 0 || vlen >= sizeof(num))
				goto bad;
			memcpy(num, val, vlen);
			num[vlen] = '\0';
			if (parse_uint64(num, UINT64_MAX, &out->size) == -1)
				goto bad;
		} else if (key_is(key, klen, "BODY")) {
			bit = 2;
			if (val_is(val, vlen, "7BIT"))
				out->body = CLEANUP_BODY_7BIT;
			else if (val_is(val, vlen, "8BITMIME"))
				out->body = CLEANUP_BODY_8BITMIME;
			else
				goto bad;
		} else if (key_is(key, klen, "SMTPUTF8")) {
			bit = 4;
			if (val != NULL)
				goto bad;
			out->smtputf8 = true;
		} else if (key_is(key, klen, "RET")) {
			bit = 8;
			if (val_is(val, vlen, "FULL"))
				out->ret = CLEANUP_RET_FULL;
			else if (val_is(val, vlen, "HDRS"))
				out->ret = CLEANUP_RET_HDRS;
			else
				goto bad;
		} else if (key_is(key, klen, "ENVID")) {
			bit = 16;
			if (val == NULL || vlen == 0 || xtext_decode(val, vlen,
			    out->envid, sizeof(out->envid)) == -1)
				goto bad;
		} else if (key_is(key, klen, "AUTH")) {
			char who[SMTP_ADDRESS_MAX + 3];

			/* RFC 4954: validated, then not trusted for anything. */
			bit = 32;
			if (val == NULL || vlen == 0 ||
			    xtext_decode(val, vlen, who, sizeof(who)) == -1)
				goto bad;
		} else {
			*reply = "555 5.5.4 Unsupported MAIL parameter";
			return -1;
		}
		if (seen & bit) {
			*reply = "501 5.5.4 Duplicate MAIL parameter";
			return -1;
		}
		seen |= bit;
	}
	if (!out->smtputf8 && has_non_ascii(out->sender)) {
		*reply = "553 5.6.7 Non-ASCII sender address needs SMTPUTF8";
		return -1;
	}
	return 0;
bad:
	*reply = "501 5.5.4 Bad MAIL parameter value";
	return -1;
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1). */
static int
parse_notify(const char *val, size_t vlen, uint8_t *notify)
{
	size_t i = 0;

	*notify = 0;
	while (i < vlen) {
		size_t j = i;

		while (j < vlen && val[j] != ',')
			j++;
		if (val_is(val + i, j - i, "NEVER"))
			*notify |= CLEANUP_NOTIFY_NEVER;
		else if (val_is(val + i, j - i, "SUCCESS"))
			*notify |= CLEANUP_NOTIFY_SUCCESS;
		else if (val_is(val + i, j - i, "FAILURE"))
			*notify |= CLEANUP_NOTIFY_FAILURE;
		else if (val_is(val + i, j - i, "DELAY"))
			*notify |= CLEANUP_NOTIFY_DELAY;
		else
			return -1;
		i = j + 1;
		if (j < vlen && i == vlen)
			return -1;	/* trailing comma */
	}
	if (*notify == 0 ||
	    ((*notify & CLEANUP_NOTIFY_NEVER) && *notify != CLEANUP_NOTIFY_NEVER))
		return -1;
	return 0;
}

/* ORCPT=addr-type;xtext, kept as "type;decoded" after checking the address. */
static int
parse_orcpt(const char *val, size_t vlen, bool utf8, char *out, size_t outsize)
{
	const char *semi = memchr(val, ';', vlen);
	char decoded[SMTP_ORCPT_MAX + 1], mailbox[SMTP_ADDRESS_MAX + 1];
	const char *why;
	size_t tlen;

	if (semi == NULL)
		return -1;
	tlen = (size_t)(semi - val);
	if (!val_is(val, tlen, "rfc822") && !(utf8 && val_is(val, tlen, "utf-8")))
		return -1;
	if (xtext_decode(semi + 1, vlen - tlen - 1, decoded, sizeof(decoded)) == -1)
		return -1;
	if (smtp_mailbox_parse(decoded, strlen(decoded),
	    utf8 ? SMTP_PATH_UTF8 : 0, mailbox, sizeof(mailbox), &why) == -1)
		return -1;
	if (tlen + 1 + strlen(decoded) + 1 > outsize)
		return -1;
	for (size_t i = 0; i < tlen; i++)
		out[i] = (char)(val[i] >= 'A' && val[i] <= 'Z' ? val[i] - 'A' + 'a'
		    : val[i]);
	out[tlen] = ';';
	memcpy(out + tlen + 1, decoded, strlen(decoded) + 1);
	return 0;
}

int
smtp_parse_rcpt(const char *args, bool utf8, struct smtp_rcpt *out,
    const char **reply)
{
	const char *p, *key, *val, *why;
	size_t klen, vlen;
	unsigned seen = 0;

	memset(out, 0, sizeof(*out));
	if ((p = skip_prefix(args, "TO:")) == NULL) {
		*reply = "501 5.5.4 Syntax: RCPT TO:<address>";
		return -1;
	}
	if (smtp_path_parse(p, SMTP_PATH_POSTMASTER_OK | SMTP_PATH_UTF8,
	    out->address, sizeof(out->address), &p, &why) == -1) {
		*reply = "553 5.1.3 Bad recipient address syntax";
		return -1;
	}
	if (*p != '\0' && *p != ' ') {
		*reply = "501 5.5.4 Junk after the recipient address";
		return -1;
	}
	if (!utf8 && has_non_ascii(out->address)) {
		*reply = "553 5.6.7 Non-ASCII recipient address needs SMTPUTF8";
		return -1;
	}
	while (next_param(&p, &key, &klen, &val, &vlen)) {
		unsigned bit;

		if (key_is(key, klen, "NOTIFY")) {
			bit = 1;
			if (val == NULL || parse_notify(val, vlen, &out->notify) == -1)
				goto bad;
		} else if (key_is(key, klen, "ORCPT")) {
			bit = 2;
			if (val == NULL || parse_orcpt(val, vlen, utf8, out->orcpt,
			    sizeof(out->orcpt)) == -1)
				goto bad;
		} else {
			*reply = "555 5.5.4 Unsupported RCPT parameter";
			return -1;
		}
		if (seen & bit) {
			*reply = "501 5.5.4 Duplicate RCPT parameter";
			return -1;
		}
		seen |= bit;
	}
	return 0;
bad:
	*reply = "501 5.5.4 Bad RCPT parameter value";
	return -1;
}

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
smtp_base64_decode(const char *s, unsigned char *out, size_t outsize)
{
	size_t len = strlen(s), o = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;

		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else {
				if (pad > 0)
					return -1;
				v[k] = b64val((unsigned char)s[i + k]);
				if (v[k] < 0)
					return -1;
			}
		}
		if (o + 3 - (size_t)pad + 1 > outsize)
			return -1;
		out[o++] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
		if (pad < 2)
			out[o++] = (unsigned char)(((v[1] & 15) << 4) | (v[2] >> 2));
		if (pad < 1)
			out[o++] = (unsigned char)(((v[2] & 3) << 6) | v[3]);
	}
	if (outsize == 0)
		return -1;
	out[o] = '\0';
	return (long)o;
}
