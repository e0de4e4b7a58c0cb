/*
 * fuzz_ipc_frame.c - libFuzzer target for the IPC frame decoder and the
 * field readers: any byte stream is split into frames and each payload is
 * read as a sequence of fields chosen by the input itself. Nothing may
 * crash, read out of bounds or loop.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <string.h>

#include "ipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		struct ipc_header h;
		struct ipc_msg m;
		const char *why;
		int rc = ipc_header_decode(data + off, size - off, &h, &why);

		if (rc != 1 || size - off - IPC_HEADER_SIZE < h.length)
			break;
		memset(&m, 0, sizeof(m));
		m.data = data + off + IPC_HEADER_SIZE;
		m.len = h.length;
		m.fd = -1;
		/* The low bits of the request id pick the field readers. */
		for (uint32_t sel = h.reqid; m.pos < m.len; sel = (sel >> 3) | (sel << 29)) {
			uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
			int64_t i64; bool b; const char *s; const void *p; size_t n;
			int r;

			switch (sel & 7) {
			case 0: r = ipc_get_u8(&m, &u8); break;
			case 1: r = ipc_get_u16(&m, &u16); break;
			case 2: r = ipc_get_u32(&m, &u32); break;
			case 3: r = ipc_get_u64(&m, &u64); break;
			case 4: r = ipc_get_i64(&m, &i64); break;
			case 5: r = ipc_get_bool(&m, &b); break;
			case 6:
				r = ipc_get_str(&m, &s);
				if (r == 0 && strlen(s) >= m.len)
					__builtin_trap();
				break;
			default: r = ipc_get_data(&m, &p, &n); break;
			}
			if (r == -1)
				break;
		}
		(void)ipc_msg_end(&m);
		off += IPC_HEADER_SIZE + h.length;
	}
	return 0;
}
