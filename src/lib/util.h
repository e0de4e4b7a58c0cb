/*
 * util.h - small helpers shared by every tern program: allocators that
 * never return NULL, bounded string copies, time and number helpers.
 * Runs in every daemon; needs no privilege.
 */
#ifndef TERN_UTIL_H
#define TERN_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TERN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TERN_NORETURN __attribute__((noreturn))
#define TERN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation failure aborts with a log line: callers never check for NULL. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) TERN_PRINTF(1, 2);
char *xvasprintf(const char *fmt, va_list ap) TERN_PRINTF(1, 0);

/* Copies at most size-1 bytes and NUL-terminates; returns strlen(src). */
size_t tern_strlcpy(char *dst, const char *src, size_t size);

/* Wall-clock seconds and a monotonic clock in microseconds. */
int64_t tern_now(void);
uint64_t tern_monotonic_usec(void);

/* ASCII case-insensitive helpers that do not depend on the locale. */
bool is_ascii_strcaseeq(const char *a, const char *b);
bool has_ascii_prefix_ci(const char *s, const char *prefix);
void ascii_lowercase(char *s);

/* Parses a decimal unsigned number that must fill the whole string. */
int parse_uint64(const char *s, uint64_t max, uint64_t *out);

/* Sets O_NONBLOCK and FD_CLOEXEC on a descriptor. */
int fd_set_nonblock(int fd);
int fd_set_cloexec(int fd, bool on);
void fd_set_tcp_nodelay(int fd);

/* For daemons that pass whole messages through malloc'd buffers: freed
 * heap is kept for the next message, not returned and faulted in again. */
void malloc_keep_freed_heap(void);

/* Creates a directory (and its parents) with the given mode when missing. */
int mkdir_p(const char *path, unsigned mode);

/*
 * Gives path (not followed if a symbolic link) the owner uid:gid and
 * the mode, without CAP_FOWNER (init/tern.service does not grant it).
 */
int set_owner_mode(const char *path, uid_t uid, gid_t gid, unsigned mode);

#endif
