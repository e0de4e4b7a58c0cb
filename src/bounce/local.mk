# src/bounce: tern-bounce's pure libraries (DSN composition, VERP return
# paths, inbound feedback parsing, bounce classification, suppression
# policy) and the daemon tern-bounce (bounce.c).
noinst_LIBRARIES += src/bounce/libbounce.a
src_bounce_libbounce_a_SOURCES = \
	src/bounce/classify.c src/bounce/classify.h \
	src/bounce/dsn.c src/bounce/dsn.h \
	src/bounce/dsn_queue.c src/bounce/dsn_queue.h \
	src/bounce/feedback.c src/bounce/feedback.h \
	src/bounce/suppress_policy.c src/bounce/suppress_policy.h \
	src/bounce/verp.c src/bounce/verp.h
BOUNCE_LIBS = src/bounce/libbounce.a

pkglibexec_PROGRAMS += src/bounce/tern-bounce
src_bounce_tern_bounce_SOURCES = src/bounce/bounce.c
src_bounce_tern_bounce_LDADD = $(BOUNCE_LIBS) $(TERNQ_LIBS)

check_PROGRAMS += tests/unit/test_bounce
tests_unit_test_bounce_SOURCES = tests/unit/test_bounce.c
tests_unit_test_bounce_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) \
	-I$(top_srcdir)/src/bounce -DGOLDEN_DIR='"$(abs_top_srcdir)/tests/unit/golden"' \
	-DCONF_DIR='"$(abs_top_srcdir)/conf"'
tests_unit_test_bounce_LDADD = $(BOUNCE_LIBS) $(TERNQ_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_bounce
EXTRA_DIST += tests/unit/golden

FUZZ_TARGETS += tests/fuzz/fuzz_feedback tests/fuzz/fuzz_verp
tests_fuzz_fuzz_feedback_SOURCES = tests/fuzz/fuzz_feedback.c
tests_fuzz_fuzz_feedback_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS) -I$(top_srcdir)/src/bounce
tests_fuzz_fuzz_feedback_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_feedback_LDADD = $(BOUNCE_LIBS) $(TERNQ_LIBS)
tests_fuzz_fuzz_verp_SOURCES = tests/fuzz/fuzz_verp.c
tests_fuzz_fuzz_verp_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS) -I$(top_srcdir)/src/bounce
tests_fuzz_fuzz_verp_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_verp_LDADD = $(BOUNCE_LIBS) $(TERNQ_LIBS)
