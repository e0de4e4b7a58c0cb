# src/qmgr: tern-qmgr, the queue manager.
pkglibexec_PROGRAMS += src/qmgr/tern-qmgr
src_qmgr_tern_qmgr_SOURCES = src/qmgr/qmgr.c src/qmgr/qmgr.h \
	src/qmgr/agent.c src/qmgr/control.c src/qmgr/dest.c \
	src/qmgr/policy.c src/qmgr/policy.h \
	src/qmgr/result_decode.c src/qmgr/result_decode.h \
	src/qmgr/results.c src/qmgr/sched.c src/qmgr/store.c
src_qmgr_tern_qmgr_LDADD = $(TERNQ_LIBS)
