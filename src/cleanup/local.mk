# src/cleanup: tern-cleanup, the queue writer for new messages.
pkglibexec_PROGRAMS += src/cleanup/tern-cleanup
# The pure parts (reader, headers, fix-ups, policy) are a library of their
# own so the unit tests and the fuzz target link exactly this code.
noinst_LIBRARIES += src/cleanup/libcleanup.a
src_cleanup_libcleanup_a_SOURCES = \
	src/cleanup/fixup.c src/cleanup/fixup.h \
	src/cleanup/header.c src/cleanup/header.h \
	src/cleanup/message.c src/cleanup/message.h \
	src/cleanup/validate.c src/cleanup/validate.h
src_cleanup_tern_cleanup_SOURCES = src/cleanup/cleanup.c src/cleanup/cleanup.h \
	src/cleanup/txn.c
src_cleanup_tern_cleanup_LDADD = src/cleanup/libcleanup.a $(TERNQ_LIBS)
CLEANUP_LIBS = src/cleanup/libcleanup.a $(TERN_LIBS)

# A blocking test client of the CLEANUP conversation (integration tests).
noinst_PROGRAMS += tests/tools/cleanup_client
tests_tools_cleanup_client_SOURCES = tests/tools/cleanup_client.c
tests_tools_cleanup_client_LDADD = $(TERN_LIBS)
