/*
 * validate.c - envelope policy of tern-cleanup (sources by socket, sender
 * domain by source, recipient syntax). Pure code over the config; runs in
 * tern-cleanup.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ipc.h"
#include "util.h"
#include "validate.h"

static int
refuse(struct verdict *v, unsigned code, const char *status, const char *fmt,
    ...) TERN_PRINTF(4, 5);

static int
refuse(struct verdict *v, unsigned code, const char *status, const char *fmt,
    ...)
{
	va_list ap;

	v->code = code;
	v->status = status;
	va_start(ap, fmt);
	(void)vsnprintf(v->text, sizeof(v->text), fmt, ap);
	va_end(ap);
	return -1;
}

/* Copies an address for a reply text, cut and without control bytes. */
static void
printable(const char *s, char *buf, size_t size)
{
	size_t n = 0;

	for (; *s != '\0' && n + 1 < size; s++)
		buf[n++] = ((unsigned char)*s < 32 || *s == 127) ? '?' : *s;
	buf[n] = '\0';
}

int
validate_sender(const struct tern_config *cfg, uint8_t source,
    const char *sender, bool smtputf8, struct verdict *v)
{
	struct address a;
	const char *why = NULL;
	char shown[120];

	memset(v, 0, sizeof(*v));
	printable(sender, shown, sizeof(shown));
	if (address_parse_mailbox(sender, strlen(sender),
	    ADDRESS_ALLOW_NULL | (smtputf8 ? ADDRESS_UTF8 : 0), &a, &why) == -1)
		return refuse(v, 553, "5.1.7", "<%s>: Sender address rejected: %s",
		    shown, why);
	if (a.is_null)
		return 0;
	if (source != CLEANUP_SOURCE_SUBMISSION &&
	    source != CLEANUP_SOURCE_SENDMAIL && source != CLEANUP_SOURCE_HTTP)
		return 0;
	if (config_find_domain(cfg, a.domain) != NULL ||
	    config_find_return_path_domain(cfg, a.domain) != NULL)
		return 0;
	/* A local user's own address (cron's root@host) is this server's,
	 * as with Postfix's myorigin; it is not signed without a [domain]. */
	if (source == CLEANUP_SOURCE_SENDMAIL &&
	    is_ascii_strcaseeq(a.domain, cfg->server.hostname))
		return 0;
	return refuse(v, 553, "5.7.1", "<%s>: Sender address rejected: %s is not "
	    "a sending domain of this server", shown, a.domain);
}

const char *
cleanup_source_name(uint8_t source)
{
	switch (source) {
	case CLEANUP_SOURCE_SUBMISSION: return "submission";
	case CLEANUP_SOURCE_INBOUND: return "inbound";
	case CLEANUP_SOURCE_SENDMAIL: return "sendmail";
	case CLEANUP_SOURCE_BOUNCE: return "bounce";
	case CLEANUP_SOURCE_HTTP: return "http";
	default: return "unknown";
	}
}

int
validate_source(bool smtpd_socket, uint8_t source, struct verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (!smtpd_socket || source == CLEANUP_SOURCE_SUBMISSION ||
	    source == CLEANUP_SOURCE_INBOUND)
		return 0;
	return refuse(v, 554, "5.7.0", "Source %s not allowed on tern-smtpd's "
	    "socket", cleanup_source_name(source));
}

int
validate_recipient(const char *rcpt, bool smtputf8, struct address *out,
    struct verdict *v)
{
	const char *why = NULL;
	char shown[120];

	memset(v, 0, sizeof(*v));
	if (address_parse_mailbox(rcpt, strlen(rcpt),
	    smtputf8 ? ADDRESS_UTF8 : 0, out, &why) == 0)
		return 0;
	printable(rcpt, shown, sizeof(shown));
	return refuse(v, 501, "5.1.3", "<%s>: Recipient address rejected: %s",
	    shown, why);
}
