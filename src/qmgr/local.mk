# src/qmgr: tern-qmgr, the queue manager.
pkglibexec_PROGRAMS += src/qmgr/tern-qmgr
src_qmgr_tern_qmgr_SOURCES = src/qmgr/qmgr.c src/qmgr/qmgr.h \
	src/qmgr/agent.c src/qmgr/bounce.c src/qmgr/control.c src/qmgr/dest.c \
	src/qmgr/policy.c src/qmgr/policy.h \
	src/qmgr/result_decode.c src/qmgr/result_decode.h \
	src/qmgr/results.c src/qmgr/sched.c src/qmgr/store.c
src_qmgr_tern_qmgr_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/src/bounce
src_qmgr_tern_qmgr_LDADD = src/bounce/libbounce.a $(TERNQ_LIBS)

# Unit test of the pure parts (policy, result decoding).
check_PROGRAMS += tests/unit/test_qmgr_policy
tests_unit_test_qmgr_policy_SOURCES = tests/unit/test_qmgr_policy.c \
	src/qmgr/policy.c src/qmgr/result_decode.c
tests_unit_test_qmgr_policy_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) \
	-I$(top_srcdir)/src/qmgr
tests_unit_test_qmgr_policy_LDADD = $(TERN_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_qmgr_policy

# libFuzzer target for DELIVERY_RESULT decoding (corpus in
# tests/fuzz/corpus/fuzz_qmgr_result).
FUZZ_TARGETS += tests/fuzz/fuzz_qmgr_result
tests_fuzz_fuzz_qmgr_result_SOURCES = tests/fuzz/fuzz_qmgr_result.c \
	src/qmgr/result_decode.c
tests_fuzz_fuzz_qmgr_result_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS) \
	-I$(top_srcdir)/src/qmgr
tests_fuzz_fuzz_qmgr_result_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_qmgr_result_LDADD = $(TERN_LIBS)
