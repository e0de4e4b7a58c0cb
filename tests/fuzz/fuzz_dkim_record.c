/*
 * fuzz_dkim_record.c - libFuzzer target for the parser of published DKIM
 * key records (DNS TXT answers, read by ternctl dkim check): any bytes
 * either parse into a k= and a p= made of base64 characters, or fail.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim_key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *k, *p;
	const char *why;

	if (dkim_record_parse((const char *)data, size, &k, &p, &why) == -1)
		return 0;
	if (strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/=") != strlen(p))
		abort();
	free(k);
	free(p);
	return 0;
}
