/*
 * mailq.c - the queue listing of mailq (see mailq.h): ternctl queue's
 * (queue/listing.c) and the maildrop. Runs as the invoking user.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <stdio.h>

#include "listing.h"
#include "mailq.h"
#include "maildrop.h"
#include "queue.h"

static size_t
count_maildrop(const char *dir)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (is_maildrop_name(de->d_name))
			n++;
	closedir(d);
	return n;
}

int
mailq_print(struct queue *q, const char *maildrop_dir, FILE *out)
{
	size_t dropped;

	if (queue_print_listing(q, out) == -1)
		return -1;
	dropped = count_maildrop(maildrop_dir);
	if (dropped > 0)
		fprintf(out, "-- %zu message%s in the maildrop, waiting for tern "
		    "to start.\n", dropped, dropped == 1 ? "" : "s");
	return 0;
}
