/*
 * Configuration: a program describes its keys in one table of pl_opt_t and
 * gets a filled struct back. Sources, later ones winning:
 *   defaults  ->  `key = value` file  ->  PARLEY_<KEY> environment  ->  --key=value / --key value
 * Every value is validated at load; the first problem is reported with the
 * key and, for the file, its path and line. Values are read with the
 * parsers of parse.h. No libevent/hiredis/MySQL types.
 */
#ifndef PL_CONFIG_H
#define PL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    PL_OPT_STR,      /* char * (heap, owned by the struct; "" allowed) */
    PL_OPT_INT,      /* int64_t, within [min, max] */
    PL_OPT_BOOL,     /* int: yes/no/true/false/on/off/1/0 */
    PL_OPT_SIZE,     /* int64_t bytes; suffix k/m/g = KiB/MiB/GiB */
    PL_OPT_DURATION, /* int64_t milliseconds; suffix ms/s/m/h/d, bare = seconds */
} pl_opt_type_t;

typedef struct pl_opt {
    const char *name; /* key in the file; env PARLEY_<NAME>; flag --name */
    pl_opt_type_t type;
    size_t offset;    /* offsetof() the field in the program's struct */
    const char *def;  /* default, in the same syntax as the file */
    int64_t min, max; /* bounds for INT/SIZE/DURATION (0,0 = unbounded) */
    /* Optional extra check of the raw string; returns 0 or writes a reason
     * into err and returns -1. */
    int (*check)(const char *value, char *err, size_t errlen);
    const char *help; /* one line for --help */
} pl_opt_t;

#define PL_OPT_END                                                                                 \
    {                                                                                              \
        NULL, 0, 0, NULL, 0, 0, NULL, NULL                                                         \
    }

/* Loads defaults, then `file` (may be NULL), then the environment, then
 * args (argv-style "--key=value" or "--key value", dashes or underscores).
 * On error writes "KEY: reason (FILE:LINE)" into err and returns -1; the
 * caller exits 2. On success returns 0. */
int pl_config_load(const pl_opt_t *table, void *cfg, const char *file, int argc, char **argv,
                   char *err, size_t errlen);

/* Sets one key from a string; returns 0 or -1 with err filled. */
int pl_config_set(const pl_opt_t *table, void *cfg, const char *key, const char *value, char *err,
                  size_t errlen);

/* Frees the strings a load allocated. */
void pl_config_free(const pl_opt_t *table, void *cfg);

/* Prints one line per key: flag, default, help. */
void pl_config_usage(const pl_opt_t *table, FILE *out);

#endif
