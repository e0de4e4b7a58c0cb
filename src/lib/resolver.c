/*
 * resolver.c - reading dns_servers values (see resolver.h).
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "resolver.h"
#include "util.h"

const char *const resolver_transparent_zones[] = {
	"test. transparent", "invalid. transparent", "localhost. transparent",
	"local. transparent", "onion. transparent",
};
const size_t resolver_n_transparent_zones =
    TERN_ARRAY_LEN(resolver_transparent_zones);

bool
resolver_forwarder_text(const char *value, char *out, size_t size)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *sep = strchr(value, '@');
	unsigned char bin[sizeof(struct in6_addr)];
	size_t alen;
	uint64_t n;

	/* One colon is IPv4 with a port; more are an IPv6 address. */
	if (sep == NULL && (sep = strchr(value, ':')) != NULL &&
	    strchr(sep + 1, ':') != NULL)
		sep = NULL;
	alen = sep != NULL ? (size_t)(sep - value) : strlen(value);
	if (sep != NULL)
		port = sep + 1;
	if (alen == 0 || alen >= sizeof(addr))
		return false;
	memcpy(addr, value, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bin) != 1 &&
	    inet_pton(AF_INET6, addr, bin) != 1)
		return false;
	if (port != NULL && (parse_uint64(port, 65535, &n) != 0 || n == 0))
		return false;
	if ((size_t)snprintf(out, size, "%s%s%s", addr, port != NULL ? "@" : "",
	    port != NULL ? port : "") >= size)
		return false;
	return true;
}
