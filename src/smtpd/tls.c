/*
 * tls.c - OpenSSL for tern-smtpd: one server context per listener (read
 * before the privilege drop), and the libevent bufferevents that carry
 * TLS, either from the first byte (smtps) or after STARTTLS.
 * Runs in tern-smtpd; the contexts are made while still privileged.
 */
#include "autoconfig.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdio.h>

#include "log.h"
#include "smtpd.h"

SSL_CTX *
tls_context_new(const struct cfg_listener *l)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char err[256];

	if (ctx == NULL)
		log_fatal("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, l->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, l->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_error_string_n(ERR_get_error(), err, sizeof(err));
		log_fatal("[listen %s]: cannot load %s / %s: %s", l->name,
		    l->tls_cert, l->tls_key, err);
	}
	return ctx;
}

/* smtps: a socket that speaks TLS from its first byte. */
struct bufferevent *
tls_socket_new(struct listener *l, int fd)
{
	SSL *ssl = SSL_new(l->tls);

	if (ssl == NULL)
		log_fatal("SSL_new failed");
	return bufferevent_openssl_socket_new(smtpd.d.base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
}

/* STARTTLS: TLS over the plain bufferevent, which the filter then owns. */
struct bufferevent *
tls_filter_new(struct listener *l, struct bufferevent *plain)
{
	SSL *ssl = SSL_new(l->tls);
	struct bufferevent *filter;

	if (ssl == NULL)
		log_fatal("SSL_new failed");
	/* The filter encrypts no more while this much waits for the socket,
	 * so replies a client does not read stay in the filter's output,
	 * where the session's limit sees them (session_output_full). */
	bufferevent_setwatermark(plain, EV_WRITE, 0, 64 * 1024);
	filter = bufferevent_openssl_filter_new(smtpd.d.base, plain, ssl,
	    BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (filter == NULL)
		log_fatal("cannot start TLS");
	return filter;
}

/* "TLSv1.3 TLS_AES_256_GCM_SHA384", for logs and cleanup. */
void
tls_describe(struct bufferevent *bev, char *buf, size_t size)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	snprintf(buf, size, "%s %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
}

/* Why a TLS session failed, or "connection lost". */
void
tls_error(struct bufferevent *bev, char *buf, size_t size)
{
	unsigned long e = bufferevent_get_openssl_error(bev);

	if (e != 0)
		ERR_error_string_n(e, buf, size);
	else
		snprintf(buf, size, "connection lost");
}
