/*
 * resolver.h - the [delivery] dns_servers values as libunbound takes
 * them, shared by tern-smtp, ternctl and the config check so that all
 * three read a value the same way. Needs no privilege and no libunbound.
 */
#ifndef TERN_RESOLVER_H
#define TERN_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * A resolver address ("192.0.2.1", "192.0.2.1@5353", "192.0.2.1:5353",
 * "2001:db8::1", "2001:db8::1@53") written as ub_ctx_set_fwd() takes it
 * ("address" or "address@port"). False if it is not a numeric address
 * with an optional port 1-65535, or does not fit in size.
 */
bool resolver_forwarder_text(const char *value, char *out, size_t size);

/*
 * unbound answers these special-use names from built-in local zones
 * without asking; a forwarder we are pointed at (a test resolver, a
 * split-horizon server) must see them. Values for "local-zone:".
 */
extern const char *const resolver_transparent_zones[];
extern const size_t resolver_n_transparent_zones;

#endif
