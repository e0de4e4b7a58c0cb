# src/ctl: ternctl, the administration command.
sbin_PROGRAMS += src/ctl/ternctl
src_ctl_ternctl_SOURCES = src/ctl/ternctl.c \
	src/ctl/ctl_suppression_io.c src/ctl/ctl_suppression_io.h
src_ctl_ternctl_LDADD = $(TERNQ_LIBS)
