# src/ctl: ternctl, the administration command.
sbin_PROGRAMS += src/ctl/ternctl
src_ctl_ternctl_SOURCES = src/ctl/ternctl.c src/ctl/ctl_dkim.c
src_ctl_ternctl_SOURCES += src/ctl/ctl_user.c src/ctl/ctl_user.h
src_ctl_ternctl_CPPFLAGS = $(AM_CPPFLAGS) $(UNBOUND_CFLAGS)
src_ctl_ternctl_LDADD = $(TERN_LIBS) $(UNBOUND_LIBS) $(CRYPT_LIBS)
