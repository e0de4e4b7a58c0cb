/*
 * fuzz_smtp_data.c - libFuzzer target for tern-smtpd's DATA/BDAT stream
 * decoder. The input is decoded whole and again in chunks whose sizes
 * the input picks; both must agree byte for byte, the output may never
 * exceed the promised bound, and the end of DATA must be a real
 * CRLF.CRLF (the consumed input ends with it, or starts with ".\r\n").
 * The chunked decoding is also held, call by call, to the byte-at-a-time
 * reference decoder (tests/unit/data_reader_ref.h).
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/smtpd/data.h"
#include "../unit/data_reader_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct data_reader whole, parts;
	struct ref_reader ref;
	uint8_t *out1, *out2, *out3;
	size_t used1, len1, used2 = 0, len2 = 0, step = 0;
	bool raw;

	if (size < 2)
		return 0;
	raw = data[0] & 1;
	step = data[1] % 17 + 1;
	data += 2;
	size -= 2;
	out1 = malloc(size + 2);
	out2 = malloc(size + 2 + 2 * (size / step + 1));
	out3 = malloc(step + 2);
	data_reader_init(&whole, raw);
	used1 = data_reader_feed(&whole, data, size, out1, &len1);
	if (len1 > size + 2 || used1 > size || (used1 < size && !whole.done))
		__builtin_trap();
	if (whole.done && !(used1 == 3 ? memcmp(data, ".\r\n", 3) == 0
	    : used1 >= 5 && memcmp(data + used1 - 5, "\r\n.\r\n", 5) == 0))
		__builtin_trap();
	if (raw && whole.done)
		__builtin_trap();
	data_reader_init(&parts, raw);
	ref_reader_init(&ref, raw);
	while (used2 < size && !parts.done) {
		size_t n = size - used2 < step ? size - used2 : step, l, l3, u;

		u = data_reader_feed(&parts, data + used2, n, out2 + len2, &l);
		if (ref_reader_feed(&ref, data + used2, n, out3, &l3) != u ||
		    l3 != l || memcmp(out3, out2 + len2, l) != 0 ||
		    ref.flags != parts.flags || ref.size != parts.size ||
		    ref.done != parts.done || ref.line_len != parts.line_len)
			__builtin_trap();
		used2 += u;
		len2 += l;
	}
	if (used1 != used2 || len1 != len2 || memcmp(out1, out2, len1) != 0 ||
	    whole.flags != parts.flags || whole.size != parts.size)
		__builtin_trap();
	free(out1);
	free(out2);
	free(out3);
	return 0;
}
