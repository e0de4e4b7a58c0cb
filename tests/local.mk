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

check_PROGRAMS += tests/unit/test_log
tests_unit_test_log_SOURCES = tests/unit/test_log.c
tests_unit_test_log_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_log_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_log

check_PROGRAMS += tests/unit/test_peer_proof
tests_unit_test_peer_proof_SOURCES = tests/unit/test_peer_proof.c
tests_unit_test_peer_proof_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_peer_proof_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_peer_proof

check_PROGRAMS += tests/unit/test_signer
tests_unit_test_signer_SOURCES = tests/unit/test_signer.c \
	src/signer/header_split.c src/signer/header_split.h
tests_unit_test_signer_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/signer
tests_unit_test_signer_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_signer_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_signer
# tern-smtpd's parsers.
check_PROGRAMS += tests/unit/test_smtp_parse
tests_unit_test_smtp_parse_SOURCES = tests/unit/test_smtp_parse.c \
	tests/unit/data_reader_ref.h $(SMTPD_PARSER_SOURCES)
tests_unit_test_smtp_parse_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_parse_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_smtp_parse

EXTRA_DIST += tests/integration tests/fuzz/corpus

# Test tools the integration tests run (built by make check and make all).
noinst_PROGRAMS += tests/tools/sign_client
tests_tools_sign_client_SOURCES = tests/tools/sign_client.c
tests_tools_sign_client_LDADD = $(TERN_LIBS)

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

# tern-signer's header splitter (message content) and the DKIM record
# parser (DNS answers in ternctl dkim check).
FUZZ_TARGETS += tests/fuzz/fuzz_header_split tests/fuzz/fuzz_dkim_record
tests_fuzz_fuzz_header_split_SOURCES = tests/fuzz/fuzz_header_split.c \
	src/signer/header_split.c
tests_fuzz_fuzz_header_split_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/signer
tests_fuzz_fuzz_header_split_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_header_split_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_header_split_LDADD = $(TERN_LIBS)
tests_fuzz_fuzz_dkim_record_SOURCES = tests/fuzz/fuzz_dkim_record.c
tests_fuzz_fuzz_dkim_record_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_dkim_record_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_dkim_record_LDADD = $(TERN_LIBS)

FUZZ_SECONDS = 20
fuzz: $(FUZZ_TARGETS)
fuzz-run: fuzz
	@$(top_srcdir)/tests/fuzz/run-fuzzers $(FUZZ_SECONDS) $(top_srcdir)/tests/fuzz/corpus $(FUZZ_TARGETS)
fuzz-long:
	$(MAKE) fuzz-run FUZZ_SECONDS=600
.PHONY: fuzz fuzz-run fuzz-long

# Test doubles the integration tests run in place of a daemon.
noinst_PROGRAMS += tests/tools/test_cleanup
tests_tools_test_cleanup_SOURCES = tests/tools/test_cleanup.c
tests_tools_test_cleanup_LDADD = $(TERN_LIBS)
# The SMTP reply parser of tern-smtp: unit tests and a libFuzzer target.
check_PROGRAMS += tests/unit/test_smtp_reply
tests_unit_test_smtp_reply_SOURCES = tests/unit/test_smtp_reply.c
tests_unit_test_smtp_reply_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_reply_LDADD = $(UNIT_LIBS)
TESTS += tests/unit/test_smtp_reply
FUZZ_TARGETS += tests/fuzz/fuzz_smtp_reply
tests_fuzz_fuzz_smtp_reply_SOURCES = tests/fuzz/fuzz_smtp_reply.c
tests_fuzz_fuzz_smtp_reply_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_reply_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_reply_LDADD = $(TERN_LIBS)

# Tools for the delivery agent's tests: a test double of tern-qmgr (the
# tests install it as tern-qmgr) and queue_fill, which queues messages.
noinst_PROGRAMS += tests/tools/test_qmgr tests/tools/queue_fill
tests_tools_test_qmgr_SOURCES = tests/tools/test_qmgr.c
tests_tools_test_qmgr_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_tools_test_qmgr_LDADD = $(TERNQ_LIBS) $(JANSSON_LIBS)
tests_tools_queue_fill_SOURCES = tests/tools/queue_fill.c
tests_tools_queue_fill_LDADD = $(TERNQ_LIBS)

# tern-smtp's pure parts: dot-stuffing and the DNS answer parser.
check_PROGRAMS += tests/unit/test_smtp_parts
tests_unit_test_smtp_parts_SOURCES = tests/unit/test_smtp_parts.c \
	src/smtp/content.c src/smtp/dns.c
tests_unit_test_smtp_parts_CFLAGS = $(UNIT_CFLAGS) $(UNBOUND_CFLAGS) \
	-I$(top_srcdir)/src/smtp
tests_unit_test_smtp_parts_LDADD = $(UNIT_LIBS) $(UNBOUND_LIBS) -lresolv
TESTS += tests/unit/test_smtp_parts
FUZZ_TARGETS += tests/fuzz/fuzz_dns_answer
tests_fuzz_fuzz_dns_answer_SOURCES = tests/fuzz/fuzz_dns_answer.c \
	src/smtp/dns.c
tests_fuzz_fuzz_dns_answer_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS) \
	$(UNBOUND_CFLAGS) -I$(top_srcdir)/src/smtp
tests_fuzz_fuzz_dns_answer_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_dns_answer_LDADD = $(TERN_LIBS) $(UNBOUND_LIBS) -lresolv
# Test tools: qmgr_fill commits messages with libternq (standing in for
# tern-cleanup); fake_smtp_agent.py stands in for tern-smtp.
noinst_PROGRAMS += tests/tools/qmgr_fill
tests_tools_qmgr_fill_SOURCES = tests/tools/qmgr_fill.c
tests_tools_qmgr_fill_LDADD = $(TERNQ_LIBS)
EXTRA_DIST += tests/tools/fake_smtp_agent.py tests/tools/ipcdefs.py
EXTRA_DIST += tests/tools/sandbox_probe.c

# tern-smtpd's parsers of untrusted input.
FUZZ_TARGETS += tests/fuzz/fuzz_smtp_command tests/fuzz/fuzz_smtp_address \
	tests/fuzz/fuzz_smtp_data
tests_fuzz_fuzz_smtp_command_SOURCES = tests/fuzz/fuzz_smtp_command.c $(SMTPD_PARSER_SOURCES)
tests_fuzz_fuzz_smtp_command_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_command_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_command_LDADD = $(TERN_LIBS)
tests_fuzz_fuzz_smtp_address_SOURCES = tests/fuzz/fuzz_smtp_address.c $(SMTPD_PARSER_SOURCES)
tests_fuzz_fuzz_smtp_address_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_address_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_address_LDADD = $(TERN_LIBS)
tests_fuzz_fuzz_smtp_data_SOURCES = tests/fuzz/fuzz_smtp_data.c \
	tests/unit/data_reader_ref.h $(SMTPD_PARSER_SOURCES)
tests_fuzz_fuzz_smtp_data_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_data_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_smtp_data_LDADD = $(TERN_LIBS)
