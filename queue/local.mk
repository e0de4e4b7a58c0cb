# queue: libternq, the LMDB queue store (see queue/SCHEMA.md and queue.h).
noinst_LIBRARIES += queue/libternq.a
queue_libternq_a_SOURCES = \
	queue/queue.h queue/queue_int.h queue/record.h \
	queue/arena.c queue/batch.c queue/claim.c queue/committer.c \
	queue/env.c queue/events.c queue/listing.c queue/listing.h \
	queue/qid.c queue/quarantine.c \
	queue/read.c queue/record.c queue/softfail.c queue/store.c \
	queue/suppress.c queue/update.c
EXTRA_DIST += queue/SCHEMA.md

# What a program using the queue links (libternq needs libtern).
TERNQ_LIBS = queue/libternq.a $(LMDB_LIBS) $(TERN_LIBS)

# Unit tests (cmocka); the binaries live in tests/unit so tools/check
# counts them.
check_PROGRAMS += tests/unit/test_queue_record tests/unit/test_queue_store \
	tests/unit/test_queue_commit
tests_unit_test_queue_record_SOURCES = tests/unit/test_queue_record.c
tests_unit_test_queue_record_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) \
	-DQUEUE_SEED_DIR='"$(abs_top_srcdir)/tests/fuzz/corpus/fuzz_queue_records"'
tests_unit_test_queue_record_LDADD = $(TERNQ_LIBS) $(CMOCKA_LIBS)
tests_unit_test_queue_store_SOURCES = tests/unit/test_queue_store.c \
	tests/unit/qtest.h
tests_unit_test_queue_store_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_queue_store_LDADD = $(TERNQ_LIBS) $(CMOCKA_LIBS)
tests_unit_test_queue_commit_SOURCES = tests/unit/test_queue_commit.c \
	tests/unit/qtest.h
tests_unit_test_queue_commit_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_queue_commit_LDADD = $(TERNQ_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_queue_record tests/unit/test_queue_store \
	tests/unit/test_queue_commit

# libFuzzer target for the record decoders (corpus in
# tests/fuzz/corpus/fuzz_queue_records, made by tests/fuzz/queue-seeds.py).
FUZZ_TARGETS += tests/fuzz/fuzz_queue_records
tests_fuzz_fuzz_queue_records_SOURCES = tests/fuzz/fuzz_queue_records.c
tests_fuzz_fuzz_queue_records_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_queue_records_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_queue_records_LDADD = $(TERNQ_LIBS)
EXTRA_DIST += tests/fuzz/queue-seeds.py
