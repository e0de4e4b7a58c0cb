/*
 * ctl_suppression_io.h - ternctl suppression import/export as CSV (see
 * ctl_suppression_io.c for the format). Runs in ternctl.
 */
#ifndef TERN_CTL_SUPPRESSION_IO_H
#define TERN_CTL_SUPPRESSION_IO_H

#include <stdio.h>

/* Writes every live entry as CSV; 0, or 1 with a message on stderr. */
int ctl_suppression_export(const char *config_path, FILE *out);
/* Imports FILE ("-": stdin), all or nothing; problems go to report. */
int ctl_suppression_import(const char *config_path, const char *file,
    FILE *report);
/* "suppression import FILE" and "suppression export" (argv[0] is
 * "suppression"); other subcommands are for the suppression commands
 * of ctl_suppression.c once merged. */
int ctl_suppression_io(const char *config_path, int argc, char **argv);

#endif
