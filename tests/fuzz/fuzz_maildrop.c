/*
 * fuzz_maildrop.c - libFuzzer target for the maildrop file parser (a
 * local user can put any bytes there) and the -t address-list parser.
 * Nothing may crash, leak or read out of bounds; a parsed file must
 * encode back to the same bytes.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "maildrop.h"
#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildrop_msg m;
	struct sm_list l = { 0 };
	const char *why;

	if (maildrop_parse((const char *)data, size, &m, &why) == 0) {
		size_t len;
		char *enc = maildrop_encode(&m, &len);

		/* Optional lines may differ; the parse of the encoding must
		 * give the same content. */
		maildrop_msg_free(&m);
		if (maildrop_parse(enc, len, &m, &why) != 0)
			abort();
		maildrop_msg_free(&m);
		free(enc);
	}
	(void)sm_parse_address_list((const char *)data, size, &l, &why);
	sm_list_free(&l);
	return 0;
}
