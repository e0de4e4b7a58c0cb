# src/sendmail: the sendmail command (mailq and newaliases by argv[0]) and
# tern-pickup, which feeds the maildrop to cleanup.
noinst_LIBRARIES += src/sendmail/libsendmail.a
src_sendmail_libsendmail_a_SOURCES = \
	src/sendmail/maildrop.c src/sendmail/maildrop.h \
	src/sendmail/mailq.c src/sendmail/mailq.h \
	src/sendmail/message.c src/sendmail/message.h \
	src/sendmail/smtp_stdio.c src/sendmail/smtp_stdio.h \
	src/sendmail/submit.c src/sendmail/submit.h
SENDMAIL_LIBS = src/sendmail/libsendmail.a

sbin_PROGRAMS += src/sendmail/sendmail
src_sendmail_sendmail_SOURCES = src/sendmail/sendmail.c
src_sendmail_sendmail_LDADD = $(SENDMAIL_LIBS) $(TERNQ_LIBS)

pkglibexec_PROGRAMS += src/sendmail/tern-pickup
src_sendmail_tern_pickup_SOURCES = src/sendmail/pickup.c
src_sendmail_tern_pickup_LDADD = $(SENDMAIL_LIBS) $(TERNQ_LIBS)

# mailq and newaliases are sendmail under another name. When the group
# tern-drop exists (see sendmail(1)) and we install as root, sendmail
# becomes setgid tern-drop; otherwise it stays a plain program and the
# maildrop is open to tern's own user only.
install-exec-hook: install-sendmail-links
install-sendmail-links:
	cd "$(DESTDIR)$(sbindir)" && rm -f mailq newaliases && \
		ln -s sendmail mailq && ln -s sendmail newaliases
	@if test -z "$(DESTDIR)" && test "`id -u`" = 0 && \
	    getent group tern-drop >/dev/null 2>&1; then \
		echo "chgrp tern-drop $(sbindir)/sendmail; chmod 2755"; \
		chgrp tern-drop "$(sbindir)/sendmail" && \
		chmod 2755 "$(sbindir)/sendmail"; \
	else \
		echo "note: sendmail is not setgid (no group tern-drop, or a staged install);"; \
		echo "      see sendmail(1) MAILDROP to let local users queue while tern is down"; \
	fi
uninstall-hook: uninstall-sendmail-links
uninstall-sendmail-links:
	rm -f "$(DESTDIR)$(sbindir)/mailq" "$(DESTDIR)$(sbindir)/newaliases"
.PHONY: install-sendmail-links uninstall-sendmail-links

check_PROGRAMS += tests/unit/test_sendmail
tests_unit_test_sendmail_SOURCES = tests/unit/test_sendmail.c
tests_unit_test_sendmail_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) -I$(top_srcdir)/src/sendmail
tests_unit_test_sendmail_LDADD = $(SENDMAIL_LIBS) $(TERNQ_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_sendmail

FUZZ_TARGETS += tests/fuzz/fuzz_maildrop
tests_fuzz_fuzz_maildrop_SOURCES = tests/fuzz/fuzz_maildrop.c
tests_fuzz_fuzz_maildrop_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS) -I$(top_srcdir)/src/sendmail
tests_fuzz_fuzz_maildrop_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_maildrop_LDADD = $(SENDMAIL_LIBS) $(TERNQ_LIBS)
EXTRA_DIST += tests/tools/cleanup_double.py tests/tools/slow_nss.c
