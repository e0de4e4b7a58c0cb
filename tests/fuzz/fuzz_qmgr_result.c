/*
 * fuzz_qmgr_result.c - libFuzzer target for tern-qmgr's decoder of
 * IPC_DELIVERY_RESULT (src/qmgr/result_decode.c), the frame a delivery
 * agent sends back: any payload must decode or be refused, without a
 * crash, an out-of-bounds read or a huge allocation. Seeds in
 * tests/fuzz/corpus/fuzz_qmgr_result.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "result_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rcpt_result *r;
	struct ipc_msg m;
	const char *why;
	size_t n;

	memset(&m, 0, sizeof(m));
	m.type = IPC_DELIVERY_RESULT;
	m.data = data;
	m.len = size;
	m.fd = -1;
	if (result_decode(&m, &r, &n, &why) == 0) {
		for (size_t i = 0; i < n; i++) {
			/* Every string ends inside the frame. */
			if (strlen(r[i].status) >= size || strlen(r[i].text) >= size ||
			    strlen(r[i].remote_host) >= size || r[i].code > 599 ||
			    r[i].stage > DELIVERY_STAGE_MAX)
				__builtin_trap();
		}
		free(r);
	}
	return 0;
}
