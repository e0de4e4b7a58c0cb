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
# VERP_KEY_FILE: tern-bounce's proof (peer_proof.h)
src_cleanup_tern_cleanup_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/src/bounce
CLEANUP_LIBS = src/cleanup/libcleanup.a $(TERN_LIBS)

# A blocking test client of the CLEANUP conversation (integration tests).
noinst_PROGRAMS += tests/tools/cleanup_client
tests_tools_cleanup_client_SOURCES = tests/tools/cleanup_client.c
tests_tools_cleanup_client_LDADD = $(TERN_LIBS)
# The tern-signer test double the integration tests start in its place.
EXTRA_DIST += tests/tools/fake_signer.py

# Unit tests (cmocka) of the pure parts and of the address parser.
check_PROGRAMS += tests/unit/test_address tests/unit/test_cleanup_message \
	tests/unit/test_cleanup_headers
tests_unit_test_address_SOURCES = tests/unit/test_address.c
tests_unit_test_address_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_address_LDADD = $(TERN_LIBS) $(CMOCKA_LIBS)
tests_unit_test_cleanup_message_SOURCES = tests/unit/test_cleanup_message.c
tests_unit_test_cleanup_message_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) \
	-I$(top_srcdir)/src/cleanup
tests_unit_test_cleanup_message_LDADD = $(CLEANUP_LIBS) $(CMOCKA_LIBS)
tests_unit_test_cleanup_headers_SOURCES = tests/unit/test_cleanup_headers.c
tests_unit_test_cleanup_headers_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) \
	-I$(top_srcdir)/src/cleanup
tests_unit_test_cleanup_headers_LDADD = $(CLEANUP_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_address tests/unit/test_cleanup_message \
	tests/unit/test_cleanup_headers

# libFuzzer target for the reader, the fix-ups and the address parser
# (corpus in tests/fuzz/corpus/fuzz_cleanup_message).
FUZZ_TARGETS += tests/fuzz/fuzz_cleanup_message
tests_fuzz_fuzz_cleanup_message_SOURCES = tests/fuzz/fuzz_cleanup_message.c
tests_fuzz_fuzz_cleanup_message_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS) \
	-I$(top_srcdir)/src/cleanup
tests_fuzz_fuzz_cleanup_message_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_cleanup_message_LDADD = $(CLEANUP_LIBS)

# libFuzzer target: tern-smtpd's From: check and tern-cleanup's From:
# domain agree on every field smtpd accepts.
FUZZ_TARGETS += tests/fuzz/fuzz_from_agreement
tests_fuzz_fuzz_from_agreement_SOURCES = tests/fuzz/fuzz_from_agreement.c \
	$(SMTPD_PARSER_SOURCES)
tests_fuzz_fuzz_from_agreement_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS) \
	-I$(top_srcdir)/src/cleanup -I$(top_srcdir)/src/smtpd
tests_fuzz_fuzz_from_agreement_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_from_agreement_LDADD = $(CLEANUP_LIBS)
