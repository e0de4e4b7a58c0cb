/*
 * result_decode.c - decodes IPC_DELIVERY_RESULT from an untrusted
 * delivery agent (see result_decode.h). Runs in tern-qmgr.
 */
#include "autoconfig.h"

#include <stdlib.h>

#include "result_decode.h"
#include "util.h"

int
result_decode(struct ipc_msg *m, struct rcpt_result **out, size_t *n,
    const char **why)
{
	struct rcpt_result *v = NULL;
	uint32_t count;

	*out = NULL;
	*n = 0;
	if (ipc_get_u32(m, &count) == -1) {
		*why = "missing result count";
		return -1;
	}
	if (count > RESULT_MAX) {
		*why = "too many results";
		return -1;
	}
	/* Each result takes at least 35 bytes: no huge allocation for a lie. */
	if ((size_t)count > (m->len - m->pos) / 35 + 1) {
		*why = "result count larger than the frame";
		return -1;
	}
	if (count > 0)
		v = xcalloc(count, sizeof(*v));
	for (uint32_t i = 0; i < count; i++) {
		struct rcpt_result *r = &v[i];

		if (ipc_get_u32(m, &r->index) == -1 ||
		    ipc_get_u16(m, &r->code) == -1 ||
		    ipc_get_u8(m, &r->stage) == -1 ||
		    ipc_get_str(m, &r->status) == -1 ||
		    ipc_get_str(m, &r->text) == -1 ||
		    ipc_get_str(m, &r->remote_host) == -1 ||
		    ipc_get_str(m, &r->remote_addr) == -1 ||
		    ipc_get_str(m, &r->tls) == -1 ||
		    ipc_get_u64(m, &r->delivery_ms) == -1) {
			*why = "truncated or invalid result";
			free(v);
			return -1;
		}
		if (r->code > 599 || (r->code != 0 && r->code < 200)) {
			*why = "reply code out of range";
			free(v);
			return -1;
		}
		if (r->stage > DELIVERY_STAGE_MAX) {
			*why = "unknown stage";
			free(v);
			return -1;
		}
	}
	if (ipc_msg_end(m) == -1) {
		*why = "bytes left over";
		free(v);
		return -1;
	}
	*out = v;
	*n = count;
	return 0;
}
