/*
 * classify.h - the class of a delivery failure, from its enhanced status
 * code and reply text, by a rule table: the operator's file ([bounce]
 * classes_file, format in conf/bounce-classes) first, then the built-in
 * rules. Classes: bad-mailbox, bad-domain, mailbox-full, policy,
 * rate-limited, dns, tls, content, other. Pure once loaded; used by
 * tern-qmgr (results) and tern-bounce (inbound feedback).
 */
#ifndef TERN_BOUNCE_CLASSIFY_H
#define TERN_BOUNCE_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>

struct config_errors;

/* The class names, NULL-terminated. */
extern const char *const bounce_class_names[];

/* True for one of bounce_class_names. */
bool is_bounce_class(const char *name);

struct bounce_classifier;

/*
 * Loads the rules of path (NULL: the built-in ones only). Returns NULL
 * when a line is bad; errs then lists each with file:line.
 */
struct bounce_classifier *bounce_classifier_load(const char *path,
    struct config_errors *errs);
/* Parses rules from a string (for tests and the built-in table). */
struct bounce_classifier *bounce_classifier_parse(const char *text,
    const char *name, struct config_errors *errs);
void bounce_classifier_free(struct bounce_classifier *c);

/*
 * The class of a failure. status is the enhanced status ("5.1.1", "" when
 * there is none: then the reply code's class stands in as "5.0.0"), code
 * the SMTP reply code (0: none), text the reply or diagnostic text.
 */
const char *bounce_classify(const struct bounce_classifier *c, unsigned code,
    const char *status, const char *text);

/* True when a status ("5.1.1") matches a pattern ("5.1.*", "*.2.2"). */
bool is_status_match(const char *pattern, const char *status);
/* True when a pattern is three dot-separated parts, each digits or "*". */
bool is_status_pattern(const char *pattern);

#endif
