/*
 * tls.c - STARTTLS for tern-smtp's client sessions (bufferevent_openssl
 * filter over the plain connection): response injection defused, the
 * certificate judged against [delivery] tls and the MX host name, the
 * Postfix-shaped TLS log line. Runs in tern-smtp, unprivileged.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "session.h"
#include "smtp.h"
#include "util.h"

/* Diagnostic texts are bounded and cut on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"


void
session_start_tls(struct session *s)
{
	const struct mx_target *t = session_target(s);
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct bufferevent *tls;

	/* Whatever came with the 220 was sent in clear by someone: it must
	 * never be read as a reply after the handshake (response injection). */
	if (evbuffer_get_length(in) > 0)
		log_info("%s[%s]: %zu byte(s) after the 220 to STARTTLS discarded",
		    t->host, t->addr, evbuffer_get_length(in));
	evbuffer_drain(in, evbuffer_get_length(in));
	smtp_reply_parser_reset(&s->parser);
	s->ssl = SSL_new(agent.ssl_ctx);
	if (s->ssl == NULL)
		log_fatal("SSL_new failed");
	SSL_set_tlsext_host_name(s->ssl, t->host);
	SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	SSL_set1_host(s->ssl, t->host);
	/* The filter writes through the socket bufferevent: EV_WRITE back on
	 * (plain sessions keep it off, see ev_flush). */
	bufferevent_enable(s->bev, EV_WRITE);
	tls = bufferevent_openssl_filter_new(agent.d.base, s->bev, s->ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL)
		log_fatal("bufferevent_openssl_filter_new failed");
	s->bev = tls;
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	session_set_state(s, SS_HANDSHAKE);
	session_timer(s, agent.cfg->delivery.command_timeout);
}

void
session_tls_done(struct session *s)
{
	const struct mx_target *t = session_target(s);
	X509 *cert = SSL_get1_peer_certificate(s->ssl);
	bool peer = cert != NULL;
	long verify = SSL_get_verify_result(s->ssl);
	const char *trust;
	int bits, alg_bits;

	bits = SSL_get_cipher_bits(s->ssl, &alg_bits);
	X509_free(cert);
	trust = !peer ? "Anonymous" :
	    verify == X509_V_OK ? "Trusted" : "Untrusted";
	log_info("%s TLS connection established to %s[%s]:%u: %s with cipher "
	    "%s (%d/%d bits)%s%s", trust, t->host, t->addr,
	    agent.cfg->delivery.smtp_port, SSL_get_version(s->ssl),
	    SSL_get_cipher_name(s->ssl), bits, alg_bits,
	    verify != X509_V_OK && peer ? ": " : "",
	    verify != X509_V_OK && peer ?
	    X509_verify_cert_error_string(verify) : "");
	snprintf(s->tls_desc, sizeof(s->tls_desc), "%s %s",
	    SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
	s->tls = true;
	if (agent.cfg->delivery.tls == TLS_POLICY_REQUIRED &&
	    (!peer || verify != X509_V_OK)) {
		session_target_failed(s, "4.7.5", "Server certificate not trusted "
		    "for %s[%s]: %s", t->host, t->addr, !peer ?
		    "no certificate" : X509_verify_cert_error_string(verify));
		return;
	}
	/* RFC 3207: forget everything learned before TLS; ask again. */
	s->esmtp = s->pipelining = s->starttls = false;
	s->eightbitmime = s->smtputf8 = s->dsn = s->size = false;
	s->size_limit = 0;
	session_send_ehlo(s);
}
