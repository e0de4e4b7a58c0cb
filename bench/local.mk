# bench: benchmarks, built with `make` but never run by tools/check.
# `make bench-queue` measures durable queue commits on the disk of
# BENCH_DIR (default: the build directory); see bench/README.md.
noinst_PROGRAMS += bench/queue-commit
bench_queue_commit_SOURCES = bench/queue-commit.c
bench_queue_commit_LDADD = $(TERNQ_LIBS)
EXTRA_DIST += bench/README.md

BENCH_DIR = .
BENCH_ARGS =
bench-queue: bench/queue-commit
	./bench/queue-commit -d $(BENCH_DIR) $(BENCH_ARGS)
.PHONY: bench-queue

# `make bench-compare` runs tern and a private Postfix side by side
# (root; installs Postfix if missing); see bench/README.md.
noinst_PROGRAMS += bench/smtp-load
bench_smtp_load_SOURCES = bench/smtp-load.c
bench_smtp_load_LDADD = $(PTHREAD_LIBS)
noinst_PROGRAMS += bench/smtp-sink-lite
bench_smtp_sink_lite_SOURCES = bench/smtp-sink-lite.c
EXTRA_DIST += bench/compare-postfix
bench-compare: bench/smtp-load bench/smtp-sink-lite all
	$(top_srcdir)/bench/compare-postfix --build $(abs_builddir) $(BENCH_ARGS)
.PHONY: bench-compare

# `make bench-delivery` measures messages/s delivered by tern-smtp from a
# full queue to a local sink (bench/delivery.py, see bench/README.md).
EXTRA_DIST += bench/delivery.py
BENCH_DELIVERY_ARGS =
bench-delivery: src/smtp/tern-smtp tests/tools/test_qmgr tests/tools/queue_fill
	TERN_BUILD_DIR=$(abs_builddir) python3 $(top_srcdir)/bench/delivery.py $(BENCH_DELIVERY_ARGS)
.PHONY: bench-delivery

# `make bench-qmgr`: tern-qmgr's RSS with 10k and 1M deferred (and due)
# recipients, and `ternctl queue` over 100k messages (bench/qmgr-rss;
# needs root or a tern user like the integration tests).
EXTRA_DIST += bench/qmgr-rss
QMGR_BENCH_ARGS =
bench-qmgr: src/qmgr/tern-qmgr src/ctl/ternctl src/master/ternd tests/tools/qmgr_fill
	$(top_srcdir)/bench/qmgr-rss --build . $(QMGR_BENCH_ARGS)
.PHONY: bench-qmgr
