# src/smtpd: tern-smtpd, the SMTP server.
pkglibexec_PROGRAMS += src/smtpd/tern-smtpd
# The parsers, shared with the unit tests and fuzz targets.
SMTPD_PARSER_SOURCES = \
	src/smtpd/smtp_address.c src/smtpd/smtp_address.h \
	src/smtpd/smtp_parse.c src/smtpd/smtp_parse.h \
	src/smtpd/data.c src/smtpd/data.h \
	src/smtpd/header_from.c src/smtpd/header_from.h
src_smtpd_tern_smtpd_SOURCES = src/smtpd/smtpd.c src/smtpd/smtpd.h \
	src/smtpd/session.c src/smtpd/commands.c src/smtpd/tls.c src/smtpd/cleanup_link.c \
	src/smtpd/auth.c src/smtpd/clients.c $(SMTPD_PARSER_SOURCES)
src_smtpd_tern_smtpd_LDADD = $(TERN_LIBS) $(CRYPT_LIBS)
