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
EXTRA_DIST += bench/compare-postfix
bench-compare: bench/smtp-load all
	$(top_srcdir)/bench/compare-postfix --build $(abs_builddir) $(BENCH_ARGS)
.PHONY: bench-compare

# `make bench-qmgr`: tern-qmgr's RSS with 10k and 1M deferred (and due)
# recipients, and `ternctl queue` over 100k messages (bench/qmgr-rss;
# needs root or a tern user like the integration tests).
EXTRA_DIST += bench/qmgr-rss
QMGR_BENCH_ARGS =
bench-qmgr: src/qmgr/tern-qmgr src/ctl/ternctl src/master/ternd tests/tools/qmgr_fill
	$(top_srcdir)/bench/qmgr-rss --build . $(QMGR_BENCH_ARGS)
.PHONY: bench-qmgr
