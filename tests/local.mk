# tests: cmocka unit tests (make check), integration tests (pytest, run by
# tools/check) and libFuzzer targets (configure --enable-fuzzing, CC=clang).
UNIT_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
UNIT_LIBS = $(TERN_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_config tests/unit/test_ipc
tests_unit_test_config_SOURCES = tests/unit/test_config.c
tests_unit_test_config_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_config_LDADD = $(UNIT_LIBS)
tests_unit_test_ipc_SOURCES = tests/unit/test_ipc.c
tests_unit_test_ipc_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_ipc_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_config tests/unit/test_ipc

EXTRA_DIST += tests/integration tests/fuzz/corpus

# libFuzzer targets: `make fuzz` builds them in a clang build directory
# configured with --enable-fuzzing; `make fuzz-run` runs each for
# FUZZ_SECONDS on its corpus (tests/fuzz/corpus/NAME).
FUZZ_FLAGS = -fsanitize=fuzzer,address,undefined
if ENABLE_FUZZING
noinst_PROGRAMS += $(FUZZ_TARGETS)
endif
FUZZ_TARGETS += tests/fuzz/fuzz_ipc_frame
tests_fuzz_fuzz_ipc_frame_SOURCES = tests/fuzz/fuzz_ipc_frame.c
tests_fuzz_fuzz_ipc_frame_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_ipc_frame_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_ipc_frame_LDADD = $(TERN_LIBS)

FUZZ_SECONDS = 20
fuzz: $(FUZZ_TARGETS)
fuzz-run: fuzz
	@$(top_srcdir)/tests/fuzz/run-fuzzers $(FUZZ_SECONDS) $(top_srcdir)/tests/fuzz/corpus $(FUZZ_TARGETS)
fuzz-long:
	$(MAKE) fuzz-run FUZZ_SECONDS=600
.PHONY: fuzz fuzz-run fuzz-long

# Test tools: qmgr_fill commits messages with libternq (standing in for
# tern-cleanup); fake_smtp_agent.py stands in for tern-smtp.
noinst_PROGRAMS += tests/tools/qmgr_fill
tests_tools_qmgr_fill_SOURCES = tests/tools/qmgr_fill.c
tests_tools_qmgr_fill_LDADD = $(TERNQ_LIBS)
EXTRA_DIST += tests/tools/fake_smtp_agent.py
