/*
 * ctl_suppression_io.c - `ternctl suppression import FILE` and
 * `ternctl suppression export`: the suppression list as CSV (RFC 4180),
 * one header line then one entry per line:
 *   address,source,reason,created,expires,queue_id
 * source is bounce, complaint or manual; created and expires are UTC
 * times as 2026-11-26T23:42:10Z (expires empty: never); queue_id is the
 * 16-digit id of the message that caused it, or empty. An import needs
 * only the address column; missing columns take source manual, reason
 * "imported", created now. An import is all or nothing: every line is
 * checked first (errors name the line), then all entries are written in
 * one transaction. Runs in ternctl as the administrator (queue access).
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "ctl_suppression_io.h"
#include "queue.h"
#include "util.h"

#define CSV_MAX_FIELDS	16
#define CSV_REASON_MAX	1000

/* ---- CSV reading ---- */

struct csv_row {
	char *field[CSV_MAX_FIELDS];
	size_t n;
};

static void
csv_row_free(struct csv_row *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->field[i]);
	r->n = 0;
}

/*
 * Reads one record (quoted fields may span lines). Returns 1 with a row,
 * 0 at the end, -1 on bad syntax (*why). *lineno counts physical lines.
 */
static int
csv_read_row(FILE *fp, struct csv_row *row, int *lineno, const char **why)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	bool quoted = false, after_quote = false, any = false;
	int c;

	row->n = 0;
	for (;;) {
		c = fgetc(fp);
		if (c == EOF) {
			if (quoted) {
				*why = "unterminated quoted field";
				goto bad;
			}
			if (!any)
				return 0;
			break;
		}
		any = true;
		if (c == '\0') {
			*why = "NUL byte";
			goto bad;
		}
		if (quoted) {
			if (c == '"') {
				int d = fgetc(fp);

				if (d == '"') {
					c = '"';
				} else {
					if (d != EOF)
						ungetc(d, fp);
					quoted = false;
					after_quote = true;
					continue;
				}
			}
			if (c == '\n')
				(*lineno)++;
		} else if (c == '"' && len == 0 && !after_quote) {
			quoted = true;
			continue;
		} else if (c == ',' || c == '\n' || c == '\r') {
			if (c == '\r') {
				int d = fgetc(fp);

				if (d != '\n' && d != EOF)
					ungetc(d, fp);
				c = '\n';
			}
			if (row->n == CSV_MAX_FIELDS) {
				*why = "too many fields";
				goto bad;
			}
			row->field[row->n++] = buf ? buf : xstrdup("");
			buf = NULL;
			len = cap = 0;
			after_quote = false;
			if (c == '\n') {
				(*lineno)++;
				return 1;
			}
			continue;
		} else if (after_quote) {
			*why = "text after a closing quote";
			goto bad;
		}
		if (len + 2 > cap) {
			cap = cap ? cap * 2 : 64;
			buf = xrealloc(buf, cap);
		}
		buf[len++] = (char)c;
		buf[len] = '\0';
		if (len > 4 * CSV_REASON_MAX) {
			*why = "field too long";
			goto bad;
		}
	}
	if (row->n == CSV_MAX_FIELDS) {
		*why = "too many fields";
		goto bad;
	}
	row->field[row->n++] = buf ? buf : xstrdup("");
	(*lineno)++;
	return 1;
bad:
	free(buf);
	csv_row_free(row);
	return -1;
}

/* ---- values ---- */

static void
format_time(int64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms == 0) {
		buf[0] = '\0';
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Parses 2026-11-26T23:42:10Z (or a plain unix time) into ms. */
static int
parse_time(const char *s, int64_t *ms)
{
	struct tm tm;
	uint64_t secs;
	char *end;

	if (parse_uint64(s, (uint64_t)INT64_MAX / 1000, &secs) == 0) {
		*ms = (int64_t)secs * 1000;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0')
		return -1;
	*ms = (int64_t)timegm(&tm) * 1000;
	return 0;
}

static bool
is_plain_address(const char *s)
{
	size_t n = strlen(s);
	const char *at = strrchr(s, '@');

	if (n == 0 || n > QUEUE_ADDRESS_MAX || at == NULL || at == s ||
	    at[1] == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '<' ||
		    *s == '>' || *s == ',')
			return false;
	return true;
}

/* Writes a CSV field, quoted when it must be. */
static void
csv_put(FILE *out, const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n") != NULL || (*s == ' ')) {
		fputc('"', out);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', out);
			fputc(*s, out);
		}
		fputc('"', out);
	} else {
		fputs(s, out);
	}
	fputc(last ? '\n' : ',', out);
}

/* ---- export ---- */

static int
export_one(void *arg, const struct queue_suppression *s)
{
	FILE *out = arg;
	char created[32], expires[32], qid[QUEUE_ID_LEN + 1] = "";
	const char *src = queue_supp_source_name(s->source);

	format_time(s->created_ms, created, sizeof(created));
	format_time(s->expires_ms, expires, sizeof(expires));
	if (s->qid != 0)
		queue_id_format(s->qid, qid);
	csv_put(out, s->address, false);
	csv_put(out, src ? src : "manual", false);
	csv_put(out, s->reason, false);
	csv_put(out, created, false);
	csv_put(out, expires, false);
	csv_put(out, qid, true);
	return 0;
}

static struct queue *
open_queue(const char *config_path, unsigned flags, bool *missing)
{
	struct config_errors errs;
	struct tern_config *cfg = config_load(config_path, &errs);
	struct queue_options qo;
	struct queue *q;

	if (cfg == NULL) {
		config_errors_print(&errs, stderr);
		config_errors_free(&errs);
		return NULL;
	}
	queue_options_from_config(&qo, cfg, flags);
	q = queue_open(&qo);
	*missing = q == NULL && queue_last_error() == QUEUE_ERR_NOTFOUND;
	if (q == NULL && !*missing)
		fprintf(stderr, "ternctl: cannot open the queue in %s: %s\n",
		    cfg->server.queue_dir, queue_strerror(queue_last_error()));
	config_free(cfg);
	return q;
}

int
ctl_suppression_export(const char *config_path, FILE *out)
{
	bool missing;
	struct queue *q = open_queue(config_path, QUEUE_OPEN_READONLY, &missing);
	int rc;

	if (q == NULL && !missing)
		return 1;
	fputs("address,source,reason,created,expires,queue_id\n", out);
	if (q == NULL)
		return 0;	/* no queue yet: no entries */
	rc = queue_suppress_list(q, 0, NULL, queue_now_ms(), export_one, out);
	if (rc == -1)
		fprintf(stderr, "ternctl: reading the suppression list: %s\n",
		    queue_strerror(queue_last_error()));
	queue_close(q);
	if (fflush(out) == EOF || ferror(out)) {
		fprintf(stderr, "ternctl: writing the export: %s\n", strerror(errno));
		return 1;
	}
	return rc == -1 ? 1 : 0;
}

/* ---- import ---- */

enum col { COL_ADDRESS, COL_SOURCE, COL_REASON, COL_CREATED, COL_EXPIRES,
	COL_QID, COL_N };
static const char *const col_names[COL_N] = { "address", "source", "reason",
	"created", "expires", "queue_id" };

int
ctl_suppression_import(const char *config_path, const char *file, FILE *report)
{
	struct csv_row row;
	int where[COL_N], lineno = 0, errors = 0, rc;
	const char *why = NULL;
	struct queue_update *u;
	struct queue *q;
	size_t added = 0;
	bool missing;
	int64_t now = queue_now_ms();
	FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");

	if (fp == NULL) {
		fprintf(report, "ternctl: %s: %s\n", file, strerror(errno));
		return 1;
	}
	for (int i = 0; i < COL_N; i++)
		where[i] = -1;
	rc = csv_read_row(fp, &row, &lineno, &why);
	if (rc != 1) {
		fprintf(report, "%s:1: %s\n", file, rc == 0 ? "empty file; the first "
		    "line names the columns (address,source,reason,created,"
		    "expires,queue_id)" : why);
		if (fp != stdin)
			fclose(fp);
		return 1;
	}
	for (size_t i = 0; i < row.n; i++) {
		bool known = false;

		for (int c = 0; c < COL_N; c++)
			if (is_ascii_strcaseeq(row.field[i], col_names[c])) {
				where[c] = (int)i;
				known = true;
			}
		if (!known) {
			fprintf(report, "%s:1: unknown column '%s'\n", file, row.field[i]);
			errors++;
		}
	}
	csv_row_free(&row);
	if (where[COL_ADDRESS] == -1) {
		fprintf(report, "%s:1: no 'address' column\n", file);
		errors++;
	}
	u = queue_update_new(now);
	while (errors < 100) {
		struct queue_suppression s;
		const char *v[COL_N];
		char *addr;
		int line = lineno + 1;		/* where the record starts */

		rc = csv_read_row(fp, &row, &lineno, &why);
		if (rc == 0)
			break;

		if (rc == -1) {
			fprintf(report, "%s:%d: %s\n", file, line, why);
			errors++;
			break;
		}
		if (row.n == 1 && row.field[0][0] == '\0') {
			csv_row_free(&row);
			continue;	/* an empty line */
		}
		for (int c = 0; c < COL_N; c++)
			v[c] = where[c] >= 0 && (size_t)where[c] < row.n ?
			    row.field[where[c]] : "";
		memset(&s, 0, sizeof(s));
		addr = xstrdup(v[COL_ADDRESS]);
		ascii_lowercase(addr);
		s.address = addr;
		s.source = QUEUE_SUPP_MANUAL;
		s.reason = *v[COL_REASON] ? v[COL_REASON] : "imported";
		s.created_ms = now;
		if (!is_plain_address(addr)) {
			fprintf(report, "%s:%d: '%.100s' is not an address\n", file,
			    line, v[COL_ADDRESS]);
			errors++;
		}
		if (*v[COL_SOURCE]) {
			s.source = 0;
			for (uint8_t k = 1; k <= 3; k++)
				if (queue_supp_source_name(k) != NULL &&
				    is_ascii_strcaseeq(v[COL_SOURCE],
				    queue_supp_source_name(k)))
					s.source = k;
			if (s.source == 0) {
				fprintf(report, "%s:%d: source must be bounce, complaint "
				    "or manual\n", file, line);
				errors++;
			}
		}
		if (strlen(s.reason) > CSV_REASON_MAX ||
		    strpbrk(s.reason, "\r\n") != NULL) {
			fprintf(report, "%s:%d: reason is longer than %d bytes or "
			    "has a line break\n", file, line, CSV_REASON_MAX);
			errors++;
		}
		if (*v[COL_CREATED] && parse_time(v[COL_CREATED], &s.created_ms) == -1) {
			fprintf(report, "%s:%d: created: expected a time like "
			    "2026-11-26T23:42:10Z\n", file, line);
			errors++;
		}
		if (*v[COL_EXPIRES] && parse_time(v[COL_EXPIRES], &s.expires_ms) == -1) {
			fprintf(report, "%s:%d: expires: expected a time like "
			    "2026-11-26T23:42:10Z\n", file, line);
			errors++;
		}
		if (*v[COL_QID] && queue_id_parse(v[COL_QID], &s.qid) == -1) {
			fprintf(report, "%s:%d: queue_id: expected 16 hex digits\n",
			    file, line);
			errors++;
		}
		if (errors == 0) {
			queue_update_suppress_add(u, &s);
			added++;
		}
		free(addr);
		csv_row_free(&row);
	}
	if (fp != stdin)
		fclose(fp);
	if (errors > 0) {
		fprintf(report, "%s: %d error(s); nothing was imported\n", file, errors);
		queue_update_free(u);
		return 1;
	}
	q = open_queue(config_path, 0, &missing);
	if (q == NULL) {
		queue_update_free(u);
		return 1;
	}
	rc = added > 0 ? queue_update_commit(q, u) : 0;
	if (rc == -1) {
		fprintf(report, "ternctl: the import was not committed: %s\n",
		    queue_strerror(queue_last_error()));
	} else {
		for (size_t i = 0; i < queue_update_count(u); i++)
			if (queue_update_status(u, i) != QUEUE_OK) {
				fprintf(report, "ternctl: entry %zu: %s\n", i + 1,
				    queue_strerror(queue_update_status(u, i)));
				rc = -1;
			}
		if (rc == 0)
			printf("imported %zu entr%s\n", added, added == 1 ? "y" : "ies");
	}
	queue_update_free(u);
	queue_close(q);
	return rc == -1 ? 1 : 0;
}

int
ctl_suppression_io(const char *config_path, int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "import") == 0)
		return ctl_suppression_import(config_path, argv[2], stderr);
	if (argc == 2 && strcmp(argv[1], "export") == 0)
		return ctl_suppression_export(config_path, stdout);
	fprintf(stderr, "usage: ternctl [-c config] suppression import FILE|-\n"
	    "       ternctl [-c config] suppression export\n");
	return 2;
}
