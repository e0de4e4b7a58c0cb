/*
 * fuzz_feedback.c - libFuzzer target for the inbound feedback parser
 * (DSN, ARF, plain-text bounces): mail from anyone on the internet.
 * Nothing may crash, leak, read out of bounds or take long; every item
 * it returns must hold terminated strings.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "feedback.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct feedback_item items[FEEDBACK_MAX_ITEMS];
	size_t n = 0;

	if (feedback_parse((const char *)data, size, items, FEEDBACK_MAX_ITEMS,
	    &n) == 0) {
		if (n > FEEDBACK_MAX_ITEMS)
			abort();
		for (size_t i = 0; i < n; i++)
			if (strlen(items[i].recipient) > FEEDBACK_ADDR_MAX ||
			    strlen(items[i].status) >= sizeof(items[i].status) ||
			    strlen(items[i].diagnostic) >= sizeof(items[i].diagnostic))
				abort();
	}
	return 0;
}
