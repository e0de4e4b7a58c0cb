# src/smtp: tern-smtp, the delivery agent (see src/smtp/smtp.h).
pkglibexec_PROGRAMS += src/smtp/tern-smtp
src_smtp_tern_smtp_SOURCES = src/smtp/smtp.c src/smtp/smtp.h \
	src/smtp/dns.c src/smtp/mx.c src/smtp/dest.c src/smtp/session.c \
	src/smtp/session.h src/smtp/tls.c src/smtp/txn.c src/smtp/content.c
src_smtp_tern_smtp_CFLAGS = $(AM_CFLAGS) $(UNBOUND_CFLAGS)
src_smtp_tern_smtp_LDADD = $(TERNQ_LIBS) $(UNBOUND_LIBS) -lresolv
