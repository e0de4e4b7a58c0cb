# src/smtpd: tern-smtpd, the SMTP server.
pkglibexec_PROGRAMS += src/smtpd/tern-smtpd
src_smtpd_tern_smtpd_SOURCES = src/smtpd/smtpd.c
src_smtpd_tern_smtpd_LDADD = $(TERN_LIBS)
