/*
 * sandbox.h - kernel-enforced least privilege with Landlock: once a
 * daemon has opened everything it needs (queue, config, certificates,
 * sockets) and dropped its privileges, it gives up the file system
 * (except the few read-only paths it still opens later), TCP ports
 * (except the ones it connects to), sockets other than Unix ones (unless
 * it connects somewhere), abstract Unix sockets and signals to processes
 * outside its sandbox, for good. Descriptors opened before
 * keep working. Best effort: a kernel without Landlock gets one warning.
 */
#ifndef TERN_SANDBOX_H
#define TERN_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sandbox;

/* A sandbox that will allow nothing yet. */
struct sandbox *sandbox_new(void);
/* Allows reading path (a file, or a directory and everything beneath it);
 * a path that does not exist is skipped. */
void sandbox_allow_read(struct sandbox *sb, const char *path);
/* Allows TCP connections to port (any address), and with it creating
 * IPv4 and IPv6 sockets (UDP ones too: Landlock has no UDP rules). A
 * sandbox that allows no port may create Unix sockets only. */
void sandbox_allow_connect(struct sandbox *sb, uint16_t port);
/* Restricts the calling process (single-threaded) for good and frees sb;
 * exits on failure, warns once if the kernel has no Landlock. */
void sandbox_enter(struct sandbox *sb);
/* True once sandbox_enter restricted the process. */
bool sandbox_is_on(void);

#endif
