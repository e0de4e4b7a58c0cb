# src/ctl: ternctl, the administration command.
sbin_PROGRAMS += src/ctl/ternctl
src_ctl_ternctl_SOURCES = src/ctl/ternctl.c src/ctl/ctl.h \
	src/ctl/ctl_dkim.c src/ctl/ctl_domain.c src/ctl/ctl_user.c src/ctl/ctl_user.h \
	src/ctl/ctl_qmgr.c src/ctl/ctl_queue.c src/ctl/ctl_suppression.c \
	src/ctl/ctl_suppression_io.c src/ctl/ctl_suppression_io.h \
	src/ctl/ctl_events.c
src_ctl_ternctl_CPPFLAGS = $(AM_CPPFLAGS) $(UNBOUND_CFLAGS)
src_ctl_ternctl_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
src_ctl_ternctl_LDADD = $(TERNQ_LIBS) $(UNBOUND_LIBS) $(SPF2_LIBS) $(CRYPT_LIBS) \
	$(JANSSON_LIBS)
