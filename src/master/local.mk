# src/master: ternd, the master daemon.
sbin_PROGRAMS += src/master/ternd
src_master_ternd_SOURCES = src/master/ternd.c src/master/service.c src/master/service.h
src_master_ternd_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS) -I$(top_srcdir)/src/sendmail
src_master_ternd_LDADD = $(TERN_LIBS) $(SYSTEMD_LIBS)
