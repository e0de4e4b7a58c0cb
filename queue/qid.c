/*
 * qid.c - queue ids: unique across restarts, ordered by arrival, 16
 * uppercase hex digits. (unix ms << 20) | (process tag << 12) | counter,
 * kept strictly increasing per process and above the highest committed
 * id (SCHEMA.md). Runs in the queue writers; no privilege.
 */
#include "autoconfig.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "queue_int.h"

static pthread_mutex_t qid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t qid_last;
static uint64_t qid_tag;
static bool qid_tag_set;

uint64_t
qid_next(void)
{
	uint64_t base, id;

	pthread_mutex_lock(&qid_lock);
	if (!qid_tag_set) {
		uint8_t r;

		if (getrandom(&r, 1, GRND_NONBLOCK) != 1)
			r = (uint8_t)(getpid() ^ queue_now_ms());
		qid_tag = r;
		qid_tag_set = true;
	}
	base = (uint64_t)queue_now_ms() << 20 | qid_tag << 12;
	id = base > qid_last ? base : qid_last + 1;
	qid_last = id;
	pthread_mutex_unlock(&qid_lock);
	return id;
}

uint64_t
queue_qid_new(void)
{
	return qid_next();
}

void
qid_seed(uint64_t committed_max)
{
	pthread_mutex_lock(&qid_lock);
	if (committed_max > qid_last)
		qid_last = committed_max;
	pthread_mutex_unlock(&qid_lock);
}

void
queue_id_format(uint64_t qid, char out[QUEUE_ID_LEN + 1])
{
	snprintf(out, QUEUE_ID_LEN + 1, "%016" PRIX64, qid);
}

int
queue_id_parse(const char *s, uint64_t *qid)
{
	uint64_t v = 0;
	size_t i;

	if (s == NULL || strlen(s) != QUEUE_ID_LEN)
		return -1;
	for (i = 0; i < QUEUE_ID_LEN; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return -1;
		v = v << 4 | d;
	}
	*qid = v;
	return 0;
}
