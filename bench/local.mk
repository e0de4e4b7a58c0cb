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
